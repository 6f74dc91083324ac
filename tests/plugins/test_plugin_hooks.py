"""One test per hook: a small plugin registers a component through it, then it is used.

tests/core/test_hookspecs.py requires a ``test_hook_<hookname>`` for every hookspec.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Iterator, Sequence

import click
import numpy as np
import pytest
import torch
from click.testing import CliRunner

import featurelens
from featurelens.cli import make_cli
from featurelens.core.dictionaries.base import Dictionary
from featurelens.core.host import manager as plugins
from featurelens.core.host.protocols import (
    CorpusSource,
    DictionaryFormat,
    Document,
    Example,
    Explainer,
    FeatureRecord,
    LLMProvider,
    LLMRequest,
    LLMResponse,
    ModelBackend,
    Scorer,
    ScoreResult,
)


def _host_with(plugin: object, name: str = "tiny"):
    host = plugins.build_host([(name, plugin)])
    assert not [f for f in host.failures if f.name == name], host.failures
    return host


# -- model backends ---------------------------------------------------------------------
class TinyBackend:
    """An embedding and ``n_layers`` residual MLP blocks; counts the blocks it ran."""

    def __init__(self, model: str, *, dtype: str = "float32", device: str = "cpu") -> None:
        torch.manual_seed(0)
        self.model_id, self.tokenizer, self.device = model, None, torch.device(device)
        self.d_model, self.n_layers, vocab = 8, 3, 16
        self.embed = torch.nn.Embedding(vocab, self.d_model)
        self.blocks = torch.nn.ModuleList(torch.nn.Linear(self.d_model, self.d_model)
                                          for _ in range(self.n_layers))
        self.unembed = torch.nn.Linear(self.d_model, vocab, bias=False)
        self.blocks_run = 0

    def hookpoints(self) -> list[str]:
        return [f"blocks.{i}.hook_resid_post" for i in range(self.n_layers)]

    def hookpoint_width(self, hookpoint: str) -> int:
        return self.d_model

    def run(self, input_ids: torch.Tensor, hookpoints: Sequence[str]) -> dict[str, torch.Tensor]:
        deepest = max(self.hookpoints().index(h) for h in hookpoints)
        x, out = self.embed(input_ids), {}
        for i, block in enumerate(self.blocks[: deepest + 1]):
            x = x + torch.relu(block(x))
            self.blocks_run += 1
            if f"blocks.{i}.hook_resid_post" in hookpoints:
                out[f"blocks.{i}.hook_resid_post"] = x
        return out

    def logits_with_patch(self, input_ids: torch.Tensor, hookpoint: str | None,
                          patch: Any = None) -> torch.Tensor:
        x = self.embed(input_ids)
        for i, block in enumerate(self.blocks):
            x = x + torch.relu(block(x))
            if patch is not None and hookpoint == f"blocks.{i}.hook_resid_post":
                x = patch(x)
        return self.unembed(x)

    def unembedding(self, fold_final_norm: bool = False) -> torch.Tensor:
        return self.unembed.weight.T


class BackendPlugin:
    @featurelens.hookimpl
    def register_model_backends(self, register):
        register("tiny", TinyBackend, description="test backend")


def test_hook_register_model_backends() -> None:
    host = _host_with(BackendPlugin())
    component = host.registry.get("model_backend", "tiny")
    assert component.plugin == "tiny" and component.description == "test backend"
    backend = component.create("tiny-model", dtype="float32", device="cpu")
    assert isinstance(backend, ModelBackend)
    acts = backend.run(torch.tensor([[1, 2, 3]]), ["blocks.1.hook_resid_post"])
    assert acts["blocks.1.hook_resid_post"].shape == (1, 3, 8)
    assert backend.blocks_run == 2  # stopped after the deepest requested hookpoint
    assert backend.unembedding().shape == (8, 16)


# -- dictionary learners and formats ----------------------------------------------------
class TiedRelu(Dictionary):
    architecture = "tied-relu"

    def __init__(self, d_in: int, d_sae: int, **options: Any) -> None:
        super().__init__(d_in, d_sae, config=options)
        self.W = torch.nn.Parameter(torch.randn(d_sae, d_in) / d_in ** 0.5)
        self.b = torch.nn.Parameter(torch.zeros(d_sae))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x @ self.W.T + self.b)

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        return f @ self.W

    def decoder_directions(self) -> torch.Tensor:
        return self.W

    def loss(self, x: torch.Tensor, target: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        error = self.decode(self.encode(x)) - (x if target is None else target)
        return {"loss": error.pow(2).sum(-1).mean()}


class LearnerPlugin:
    @featurelens.hookimpl
    def register_dictionary_learners(self, register):
        register("tied-relu", TiedRelu)


def test_hook_register_dictionary_learners() -> None:
    torch.manual_seed(0)
    sae = _host_with(LearnerPlugin()).registry.get("dictionary_learner", "tied-relu").create(6, 24)
    x = torch.randn(128, 6)
    optimiser = torch.optim.Adam(sae.parameters(), lr=0.02)
    first = sae.loss(x)["loss"].item()
    for _ in range(30):
        optimiser.zero_grad()
        sae.loss(x)["loss"].backward()
        optimiser.step()
    assert sae.loss(x)["loss"].item() < first
    sparse = sae.encode_sparse(x[:4], max_active=3)
    assert sparse.values.shape == (4, 3) and (sparse.values >= 0).all()


class NpzFormat:
    """Tied-ReLU weights in one ``.npz`` file."""

    name = "npz"

    def detect(self, path: str) -> bool:
        return path.endswith(".npz") and Path(path).is_file()

    def load(self, path: str, **options: Any) -> Dictionary:
        data = np.load(path)
        sae = TiedRelu(int(data["W"].shape[1]), int(data["W"].shape[0]))
        with torch.no_grad():
            sae.W.copy_(torch.from_numpy(data["W"]))
            sae.b.copy_(torch.from_numpy(data["b"]))
        return sae

    def save(self, dictionary: Dictionary, path: str) -> None:
        np.savez(path, W=dictionary.W.detach().numpy(), b=dictionary.b.detach().numpy())


class FormatPlugin:
    @featurelens.hookimpl
    def register_dictionary_formats(self, register):
        register("npz", NpzFormat)


def test_hook_register_dictionary_formats(tmp_path: Path) -> None:
    fmt = _host_with(FormatPlugin()).registry.get("dictionary_format", "npz").create()
    assert isinstance(fmt, DictionaryFormat)
    torch.manual_seed(1)
    sae, path = TiedRelu(4, 8), str(tmp_path / "sae.npz")
    assert not fmt.detect(path)
    fmt.save(sae, path)
    assert fmt.detect(path)
    x = torch.randn(5, 4)
    assert torch.equal(fmt.load(path).encode(x), sae.encode(x))


# -- corpus sources ---------------------------------------------------------------------
class WordsCorpus:
    def __init__(self, location: str, *, repeat: int = 1) -> None:
        self.words, self.repeat = location.split(","), repeat

    def fingerprint(self) -> str:
        return f"words:{','.join(self.words)}x{self.repeat}"

    def __iter__(self) -> Iterator[Document]:
        for r in range(self.repeat):
            for i, word in enumerate(self.words):
                yield Document(word, f"words#{r}.{i}")


class CorpusPlugin:
    @featurelens.hookimpl
    def register_corpus_sources(self, register):
        register("words", WordsCorpus)


def test_hook_register_corpus_sources() -> None:
    corpus = _host_with(CorpusPlugin()).registry.get("corpus_source", "words").create("a,b", repeat=2)
    assert isinstance(corpus, CorpusSource)
    assert [d.text for d in corpus] == ["a", "b", "a", "b"]
    assert corpus.fingerprint() == "words:a,bx2"


# -- explainers and scorers ---------------------------------------------------------------
RECORD = FeatureRecord("d", 1, 3.0, 0.1, [
    Example(["x", " cat"], [0.0, 3.0], "top"), Example(["y", " cats"], [0.0, 2.0], "top"),
    Example(["z", "."], [0.0, 0.0], "random"),
])


class PeakExplainer:
    name = "peak"

    def requests(self, record: FeatureRecord) -> list[LLMRequest]:
        peaks = [e.tokens[e.activations.index(e.max_activation)] for e in record.of_kind("top")]
        return [LLMRequest(messages=[{"role": "user", "content": "Label: " + "|".join(peaks)}])]

    def parse(self, record: FeatureRecord, responses: list[LLMResponse]) -> str:
        return responses[0].text.removeprefix("Label: ").replace("|", " or ").strip()


class ExplainerPlugin:
    @featurelens.hookimpl
    def register_explainers(self, register):
        register("peak", PeakExplainer)


def test_hook_register_explainers() -> None:
    explainer = _host_with(ExplainerPlugin()).registry.get("explainer", "peak").create()
    assert isinstance(explainer, Explainer)
    [request] = explainer.requests(RECORD)
    assert request.messages[-1]["content"] == "Label:  cat| cats"
    assert explainer.parse(RECORD, [LLMResponse(text="Label:  cat| cats")]) == "cat or  cats"


class MentionScorer:
    name = "mention"

    def requests(self, record, explanation, capabilities) -> list[LLMRequest]:
        return [LLMRequest(messages=[{"role": "user", "content": explanation}])]

    def score(self, record, explanation, responses) -> ScoreResult:
        if responses[0] is None:
            return ScoreResult(None, "failed")
        top = record.of_kind("top")
        hits = sum(any(t.strip() in responses[0].text for t in e.tokens[1:]) for e in top)
        return ScoreResult(hits / len(top), "ok")


class ScorerPlugin:
    @featurelens.hookimpl
    def register_scorers(self, register):
        register("mention", MentionScorer)


def test_hook_register_scorers() -> None:
    scorer = _host_with(ScorerPlugin()).registry.get("scorer", "mention").create()
    assert isinstance(scorer, Scorer)
    [request] = scorer.requests(RECORD, "cat", frozenset())
    assert scorer.score(RECORD, "cat", [LLMResponse(text="cat")]).score == 0.5
    assert scorer.score(RECORD, "cat", [None]).status == "failed"


# -- LLM providers -------------------------------------------------------------------------
class ShoutProvider:
    name = "shout"
    capabilities: frozenset[str] = frozenset({"prompt_cache"})

    def __init__(self, model: str, **options: Any) -> None:
        self.model = model

    async def complete(self, request: LLMRequest) -> LLMResponse:
        text = request.messages[-1]["content"].upper()
        return LLMResponse(text=f"{self.model}:{text}", input_tokens=len(text.split()))


class ProviderPlugin:
    @featurelens.hookimpl
    def register_llm_providers(self, register):
        register("shout", ShoutProvider)


def test_hook_register_llm_providers(monkeypatch: pytest.MonkeyPatch) -> None:
    host = _host_with(ProviderPlugin())
    monkeypatch.setattr(plugins, "_HOST", host)
    provider = plugins.create("llm_provider", "shout:big:v2")  # model part may hold colons
    assert isinstance(provider, LLMProvider) and provider.model == "big:v2"
    answer = asyncio.run(provider.complete(LLMRequest(messages=[{"role": "user", "content": "hi there"}])))
    assert answer.text == "big:v2:HI THERE" and answer.input_tokens == 2


# -- commands ----------------------------------------------------------------------------------
class CommandPlugin:
    @featurelens.hookimpl
    def register_commands(self, cli: click.Group) -> None:
        @cli.command("greet")
        @click.argument("who")
        def greet(who: str) -> None:
            """Say hello."""
            click.echo(f"hello {who}")


def test_hook_register_commands() -> None:
    host = _host_with(CommandPlugin())
    assert host.infos["tiny"].hooks == ["register_commands"]
    result = CliRunner().invoke(make_cli(host), ["greet", "world"])
    assert result.exit_code == 0 and result.stdout == "hello world\n"
    assert "greet" in CliRunner().invoke(make_cli(host), ["--help"]).stdout
