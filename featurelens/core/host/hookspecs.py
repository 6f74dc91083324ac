"""Hook specifications: the only doors through which methods enter featurelens.

Every hook is in register-callback style: the host passes a ``register`` callable and
the plugin calls it once per component it provides. The host owns the names, refuses
a name that another plugin already took, and records which plugin provided each
component, so ``featurelens plugins list`` can show it. Built-in components are
registered through these same hooks (see :mod:`featurelens.plugins`).

``register`` has the signature ``register(name, factory, *, description="")``:

- ``name`` is the public name users type (``hf``, ``topk``, ``simulation``, ``openai``).
  It must be lowercase letters, digits, ``-`` or ``_``.
- ``factory`` is a class or callable that builds the component from keyword options.
  What it must return is said in each hook below.
- ``description`` is one line shown by ``featurelens plugins list`` and ``--help``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import pluggy

if TYPE_CHECKING:
    import click

hookspec = pluggy.HookspecMarker("featurelens")

#: The callable passed to every ``register_*`` hook.
Register = Callable[..., None]


@hookspec
def register_model_backends(register: Register) -> None:
    """Register model backends: things that load a language model and read hookpoints.

    :param register: call ``register(name, factory, description=...)`` once per backend.
        ``factory(model: str, *, dtype: str, device: str, **options)`` returns an object
        implementing :class:`featurelens.core.host.protocols.ModelBackend`: a tokenizer, the
        list of hookpoints it understands, and a forward pass that returns the
        activations at the requested hookpoints and stops after the deepest one.
    :return: nothing; components are reported through ``register``.
    """


@hookspec
def register_dictionary_learners(register: Register) -> None:
    """Register dictionary architectures (sparse autoencoders, transcoders).

    :param register: call ``register(name, factory, description=...)`` once per
        architecture (``topk``, ``jumprelu``, ``transcoder``...). ``factory(d_in, d_sae,
        **options)`` returns a :class:`featurelens.core.host.protocols.Dictionary` (a
        ``torch.nn.Module`` with ``encode``/``decode``) that can also be trained: it
        exposes ``loss(x, target) -> dict`` whose ``"loss"`` entry is minimised.
    :return: nothing; components are reported through ``register``.
    """


@hookspec
def register_dictionary_formats(register: Register) -> None:
    """Register on-disk dictionary formats (SAELens, sparsify, Gemma Scope...).

    :param register: call ``register(name, factory, description=...)`` once per format.
        ``factory()`` returns a :class:`featurelens.core.host.protocols.DictionaryFormat`
        with ``detect(path) -> bool``, ``load(path, **options) -> Dictionary`` and,
        if the format can be written, ``save(dictionary, path)``.
    :return: nothing; components are reported through ``register``.
    """


@hookspec
def register_corpus_sources(register: Register) -> None:
    """Register corpus sources: where the text that the model reads comes from.

    :param register: call ``register(name, factory, description=...)`` once per source
        (``text``, ``jsonl``, ``parquet``...). ``factory(location: str, **options)``
        returns a :class:`featurelens.core.host.protocols.CorpusSource`, an iterable of
        documents (``str``), read lazily so that corpora larger than memory stream.
    :return: nothing; components are reported through ``register``.
    """


@hookspec
def register_explainers(register: Register) -> None:
    """Register explainers: methods that turn a feature's examples into a label.

    :param register: call ``register(name, factory, description=...)`` once per
        explainer. ``factory(**options)`` returns a
        :class:`featurelens.core.host.protocols.Explainer`: it builds the chat messages for
        one feature from its stored record and parses the LLM's answer into an
        explanation.
    :return: nothing; components are reported through ``register``.
    """


@hookspec
def register_scorers(register: Register) -> None:
    """Register scorers: methods that measure how well an explanation predicts a feature.

    :param register: call ``register(name, factory, description=...)`` once per scorer
        (``simulation``, ``detection``, ``fuzzing``...). ``factory(**options)`` returns a
        :class:`featurelens.core.host.protocols.Scorer`.
    :return: nothing; components are reported through ``register``.
    """


@hookspec
def register_llm_providers(register: Register) -> None:
    """Register LLM providers, the clients that explainers and scorers call.

    :param register: call ``register(name, factory, description=...)`` once per
        provider. Users pick one as ``provider:model`` (``openai:gpt-4o-mini``); the
        host calls ``factory(model: str, **options)``, which returns a
        :class:`featurelens.core.host.protocols.LLMProvider`. API keys are read from the
        environment by the provider itself, never passed through options. Pass
        ``info=ProviderInfo(...)`` to declare what the provider can do, how it counts
        tokens, its prompt cache, batch client, grouped-request default and prices, so
        estimates, dry runs and ``--batch-api`` treat it as a built-in without building it.
    :return: nothing; components are reported through ``register``.
    """


@hookspec
def register_commands(cli: "click.Group") -> None:
    """Add commands to the ``featurelens`` command line.

    :param cli: the top-level :class:`click.Group`; add commands with
        ``@cli.command()`` or ``cli.add_command(...)``. Keep commands thin: parse
        options, call library code, print.
    :return: nothing.
    """
