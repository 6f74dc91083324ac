"""``label --batch-api`` resolves its ``--llm`` once, up front, into the ``LLMChoice`` every
stage carries: the spec is split once on the way to the submitted batches, and the
provider's declaration is read from that object, not looked up again by name."""

from __future__ import annotations

import pytest

from featurelens.core.host import manager
from featurelens.llm import providers, stage
from featurelens.llm.batch import choice, clients
from featurelens.registry import components
from tests.jobs.test_label_batches import service  # noqa: F401  (the fake OpenAI batch service)


@pytest.mark.parametrize("flag", [["--batch-api"], ["--batch-threshold", "1"]])
def test_the_spec_is_split_once_on_the_way_to_the_batches(store_path, store, service, cli, monkeypatch, flag):
    store.close()
    split, looked_up = [], []
    real_split, real_info = components.split_llm_spec, providers.provider_info

    def counted_split(spec: str):
        split.append(spec)
        return real_split(spec)

    def counted_info(name: str):
        looked_up.append(name)
        return real_info(name)

    for module in (components, stage, providers, manager, choice):
        monkeypatch.setattr(module, "split_llm_spec", counted_split)
    for module in (providers, clients, choice):
        monkeypatch.setattr(module, "provider_info", counted_info)
    submitted = cli("label", "--store", str(store_path), "--llm", "openai:gpt-4o-mini", "--explainer", "echo",
                    "--scorer", "detection", *flag)
    assert submitted.exit_code == 0, submitted.output
    assert "submitted 5 requests for 5 features" in submitted.output
    assert split == ["openai:gpt-4o-mini"]
    assert looked_up == []
