"""The example plugin's own tests: run them after installing the package."""

from __future__ import annotations

import asyncio

import torch

from featurelens.api import (
    CorpusSource,
    Example,
    Explainer,
    FeatureRecord,
    LLMProvider,
    Scorer,
    build_host,
)


def _record() -> FeatureRecord:
    return FeatureRecord("d", 7, 2.0, 0.01, [
        Example(["the", " dog", " ran"], [0.0, 2.0, 0.1], "top"),
        Example(["a", " dog", "."], [0.0, 1.5, 0.0], "top"),
        Example(["x", " cat", "."], [0.0, 0.9, 0.0], "top"),
        Example(["y", "z", "."], [0.0, 0.0, 0.0], "random"),
    ])


def test_discovered_through_the_entry_point():
    host = build_host()
    names = {(c.kind, c.name) for c in host.registry.by_plugin("example")}
    assert names == {
        ("corpus_source", "example-lines"), ("dictionary_learner", "example-relu"),
        ("explainer", "example-keywords"), ("scorer", "example-keyword-recall"),
        ("llm_provider", "example-echo"),
    }
    assert "register_commands" in host.infos["example"].hooks


def test_label_and_score_offline():
    host = build_host()
    explainer = host.registry.get("explainer", "example-keywords").create()
    scorer = host.registry.get("scorer", "example-keyword-recall").create()
    provider = host.registry.get("llm_provider", "example-echo:v1").create("v1")
    assert isinstance(explainer, Explainer) and isinstance(scorer, Scorer)
    assert isinstance(provider, LLMProvider)
    record = _record()
    responses = [asyncio.run(provider.complete(r)) for r in explainer.requests(record)]
    label = explainer.parse(record, responses)
    assert label == "fires on 'dog', 'cat'"
    result = scorer.score(record, label, [])
    assert result.status == "ok" and result.score == 1.0
    assert scorer.score(record, "fires on 'cat'", []).score == 1 / 3


def test_lines_corpus_streams_non_empty_lines(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("first line\n\nsecond line\n", encoding="utf-8")
    corpus = build_host().registry.get("corpus_source", "example-lines").create(str(path))
    assert isinstance(corpus, CorpusSource)
    assert [(d.text, d.ref.rsplit("#", 1)[1]) for d in corpus] == [("first line", "1"), ("second line", "3")]
    before = corpus.fingerprint()
    path.write_text("changed\n", encoding="utf-8")
    assert corpus.fingerprint() != before


def test_relu_dictionary_trains():
    torch.manual_seed(0)
    sae = build_host().registry.get("dictionary_learner", "example-relu").create(8, 32)
    x = torch.randn(256, 8)
    optimiser = torch.optim.Adam(sae.parameters(), lr=1e-2)
    first = sae.loss(x)["loss"].item()
    for _ in range(50):
        optimiser.zero_grad()
        sae.loss(x)["loss"].backward()
        optimiser.step()
    assert sae.loss(x)["loss"].item() < 0.5 * first
    assert (sae.encode(x) >= 0).all() and sae.decode(sae.encode(x)).shape == x.shape
