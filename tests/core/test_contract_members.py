"""The optional members the host reads are declared with their defaults, and only LLM providers
declare a ProviderInfo, of the right type, at registration."""

from __future__ import annotations

import pytest

import featurelens
from featurelens.api import (
    ExplainerBase,
    LLMProviderBase,
    ProviderInfo,
    PromptCache,
    ScorerBase,
)
from featurelens.core.host import manager as plugins
from featurelens.core.host.protocols import declared, example_kinds, needs_llm, score_takes_capabilities


class Bare:
    """An explainer or scorer that sets none of the optional members."""

    name = "bare"


def test_members_a_component_leaves_out_read_as_their_declared_defaults():
    assert needs_llm(Bare()) is True and example_kinds(Bare()) is None
    assert declared(Bare(), "groups_features", ExplainerBase) is False
    assert declared(Bare(), "max_tokens", ExplainerBase) is None
    assert declared(Bare(), "more_requests", ScorerBase) is None
    assert declared(Bare(), "key_env", LLMProviderBase) is None
    assert not score_takes_capabilities(type("S", (), {"score": lambda self, r, e, responses: None})())
    assert score_takes_capabilities(ScorerBase())
    with pytest.raises(AttributeError):  # the host may read only what the contract declares
        declared(Bare(), "not_in_the_contract", ExplainerBase)


def test_members_a_component_sets_are_read_whether_or_not_it_subclasses_a_base():
    class Subclassed(ExplainerBase):
        needs_llm = False

        def example_kinds(self):
            return {"top": 3}

    plain = Bare()
    plain.needs_llm = False
    assert not needs_llm(Subclassed()) and not needs_llm(plain)
    assert example_kinds(Subclassed()) == {"top": 3}


def test_prompt_cache_serves_the_minimum_then_whole_steps():
    assert PromptCache(1024, 128).cached(1000) == 0
    assert PromptCache(1024, 128).cached(1300) == 1024 + 256
    assert PromptCache(1024).cached(1300) == 1300


def _plugin(**register_kwargs):
    class Plugin:
        @staticmethod
        @featurelens.hookimpl
        def register_scorers(register):
            register("s", Bare, **register_kwargs.get("scorer", {}))

        @staticmethod
        @featurelens.hookimpl
        def register_llm_providers(register):
            register("p", Bare, **register_kwargs.get("provider", {}))

    return Plugin


def test_info_is_for_providers_only_and_must_be_a_provider_info():
    host = plugins.build_host([("fine", _plugin())])
    assert host.registry.get("llm_provider", "p:m").info == ProviderInfo()  # the defaults
    assert host.registry.get("scorer", "s").info is None
    for name, kwargs, words in [
            ("info-on-scorer", {"scorer": {"info": ProviderInfo()}}, "only LLM providers declare"),
            ("info-a-dict", {"provider": {"info": {"free": True}}}, "pass a featurelens.api.ProviderInfo")]:
        host = plugins.build_host([(name, _plugin(**kwargs))])
        [failure] = [f for f in host.failures if f.name == name]
        assert words in failure.error and not host.registry.by_plugin(name)
