"""featurelens-example-plugin: one component of each kind, registered through the hooks.

The module named by the ``featurelens`` entry point is the plugin: pluggy collects the
functions marked ``@featurelens.hookimpl`` from it. ``featurelens_api`` declares the
plugin-API version this code was written for, so a featurelens that changed the API
refuses it with a clear message instead of failing deep inside a run.
"""

from __future__ import annotations

import featurelens

from featurelens_example.commands import example_label
from featurelens_example.components import (
    ECHO_INFO,
    EchoProvider,
    KeywordExplainer,
    KeywordRecallScorer,
    LinesCorpus,
    ReluDictionary,
)

__version__ = "0.1.0"
featurelens_api = 1


@featurelens.hookimpl
def register_corpus_sources(register):
    register("example-lines", LinesCorpus, description="One document per non-empty line of a text file.")


@featurelens.hookimpl
def register_dictionary_learners(register):
    register("example-relu", ReluDictionary, description="Plain ReLU sparse autoencoder with an L1 penalty.")


@featurelens.hookimpl
def register_explainers(register):
    register("example-keywords", KeywordExplainer,
             description="Labels a feature by the tokens it peaks on.")


@featurelens.hookimpl
def register_scorers(register):
    register("example-keyword-recall", KeywordRecallScorer,
             description="Share of top examples whose peak token the explanation names.")


@featurelens.hookimpl
def register_llm_providers(register):
    register("example-echo", EchoProvider, info=ECHO_INFO,
             description="Answers with the request's last message: offline and deterministic.")


@featurelens.hookimpl
def register_commands(cli):
    cli.add_command(example_label)
