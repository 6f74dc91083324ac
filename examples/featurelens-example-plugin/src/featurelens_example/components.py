"""The example's components. Each implements a featurelens.api contract; dictionaries
subclass ``Dictionary`` (a torch module), the explainer, scorer and provider subclass the
optional bases (``ExplainerBase``, ``ScorerBase``, ``LLMProviderBase``) that declare every
member featurelens reads, with its default."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import torch

from featurelens.api import (
    BatchLimits,
    BatchState,
    Dictionary,
    Document,
    ExplainerBase,
    FeatureRecord,
    FeaturelensError,
    LLMProviderBase,
    LLMRequest,
    LLMResponse,
    ParseError,
    Price,
    PromptCache,
    ProviderInfo,
    ScoreResult,
    ScorerBase,
    TokenCounter,
)


class LinesCorpus:
    """One document per non-empty line: the simplest corpus that still streams."""

    def __init__(self, location: str, *, encoding: str = "utf-8") -> None:
        self.path = Path(location)
        if not self.path.is_file():
            raise FeaturelensError(
                f"The corpus file {location} does not exist; pass the path of a text file."
            )
        self.encoding = encoding

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        with self.path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return f"lines:{digest.hexdigest()[:16]}"

    def __iter__(self) -> Iterator[Document]:
        with self.path.open(encoding=self.encoding) as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    yield Document(line.rstrip("\n"), f"{self.path}#{number}")


class ReluDictionary(Dictionary):
    """``f = relu((x - b_dec) W_enc + b_enc)``, ``x' = f W_dec + b_dec``, L1 on ``f``."""

    architecture = "example-relu"

    def __init__(self, d_in: int, d_sae: int, *, l1_coefficient: float = 1e-3,
                 seed: int = 0, **options: Any) -> None:
        super().__init__(d_in, d_sae, config={"l1_coefficient": l1_coefficient, **options})
        generator = torch.Generator().manual_seed(seed)
        w_dec = torch.randn(d_sae, d_in, generator=generator)
        w_dec /= w_dec.norm(dim=1, keepdim=True)
        self.W_dec = torch.nn.Parameter(w_dec)
        self.W_enc = torch.nn.Parameter(w_dec.T.clone())
        self.b_enc = torch.nn.Parameter(torch.zeros(d_sae))
        self.b_dec = torch.nn.Parameter(torch.zeros(d_in))
        self.l1_coefficient = l1_coefficient

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu((x - self.b_dec) @ self.W_enc + self.b_enc)

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        return f @ self.W_dec + self.b_dec

    def decoder_directions(self) -> torch.Tensor:
        return self.W_dec

    def loss(self, x: torch.Tensor, target: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        target = x if target is None else target
        f = self.encode(x)
        mse = (self.decode(f) - target).pow(2).sum(dim=-1).mean()
        l1 = f.abs().sum(dim=-1).mean()
        return {"loss": mse + self.l1_coefficient * l1, "mse": mse, "l1": l1}


def peak_tokens(record: FeatureRecord, kind: str = "top") -> list[str]:
    """The token at which each example of ``kind`` peaks (examples that never fire skipped)."""
    peaks = []
    for example in record.of_kind(kind):
        if example.tokens and example.max_activation > 0:
            position = max(range(len(example.activations)), key=example.activations.__getitem__)
            peaks.append(example.tokens[position].strip())
    return [p for p in peaks if p]


class KeywordExplainer(ExplainerBase):
    """Names the tokens a feature peaks on most often, then lets the LLM rephrase that rule.

    With ``example-echo`` the rule comes back unchanged, so the explainer works offline.
    """

    name = "example-keywords"

    def __init__(self, *, n_keywords: int = 3) -> None:
        self.n_keywords = n_keywords

    def keywords(self, record: FeatureRecord) -> list[str]:
        return [token for token, _ in Counter(peak_tokens(record)).most_common(self.n_keywords)]

    def requests(self, record: FeatureRecord) -> list[LLMRequest]:
        words = self.keywords(record)
        rule = "fires on " + ", ".join(repr(w) for w in words) if words else "never fires"
        return [LLMRequest(
            messages=[
                {"role": "system", "content": "Rephrase the rule you are given as a short "
                 "feature label. Reply with the label only."},
                {"role": "user", "content": rule},
            ],
            max_tokens=32, shared_prefix=1, purpose="explain",
        )]

    def parse(self, record: FeatureRecord, responses: list[LLMResponse]) -> str:
        text = responses[0].text.strip() if responses else ""
        if not text:
            raise ParseError("the LLM returned an empty label")
        return text.splitlines()[0]


class KeywordRecallScorer(ScorerBase):
    """Share of top examples whose peak token appears in the explanation: no LLM needed."""

    name = "example-keyword-recall"

    def requests(self, record: FeatureRecord, explanation: str,
                 capabilities: frozenset[str]) -> list[LLMRequest]:
        return []

    def score(self, record: FeatureRecord, explanation: str,
              responses: list[LLMResponse | None]) -> ScoreResult:
        peaks = peak_tokens(record)
        if not peaks:
            return ScoreResult(None, "undefined", details={"reason": "no activating examples"})
        text = explanation.lower()
        hits = [p for p in peaks if p.lower() in text]
        recall = len(hits) / len(peaks)
        return ScoreResult(recall, "ok", metrics={"recall": recall, "n": len(peaks)},
                           details={"peaks": peaks})


def echo(request: LLMRequest) -> LLMResponse:
    """The echo's answer: the request's last message (or its prompt); a token is a word."""
    if request.prompt is not None:
        text = request.prompt
        words = len(text.split())
    else:
        text = request.messages[-1]["content"] if request.messages else ""
        words = sum(len(m["content"].split()) for m in request.messages)
    return LLMResponse(text=text, input_tokens=words, output_tokens=len(text.split()))


class EchoProvider(LLMProviderBase):
    """An LLM provider that answers with the request's last message."""

    name = "example-echo"
    capabilities: frozenset[str] = frozenset({"batch_api", "prompt_cache"})

    def __init__(self, model: str, **options: Any) -> None:
        self.model = model
        self.options = options

    async def complete(self, request: LLMRequest) -> LLMResponse:
        return echo(request)


#: Where echo batches wait to be collected (any later process finds them there).
BATCH_DIR_ENV = "FEATURELENS_EXAMPLE_BATCHES"


def _batch_dir() -> Path:
    folder = Path(os.environ.get(BATCH_DIR_ENV) or Path(tempfile.gettempdir()) / "featurelens-example-batches")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class EchoBatches:
    """The echo's batch API: a batch is a JSONL file, answered as soon as it is written."""

    limits = BatchLimits(requests=10_000, bytes=50 * 2**20)

    def __init__(self, provider: EchoProvider) -> None:
        self.provider = provider

    def line(self, custom_id: str, request: LLMRequest) -> dict[str, Any]:
        return {"custom_id": custom_id, "messages": request.messages, "prompt": request.prompt}

    async def submit(self, lines: list[dict[str, Any]], label: str | None = None) -> str:
        batch_id = f"echo-batch-{uuid.uuid4().hex[:16]}"
        header = {"label": label, "created": time.time(), "model": self.provider.model}
        text = "\n".join(json.dumps(item) for item in [header, *lines]) + "\n"
        path = _batch_dir() / f"{batch_id}.jsonl"
        path.with_suffix(".tmp").write_text(text, encoding="utf-8")
        path.with_suffix(".tmp").replace(path)  # whole or absent
        return batch_id

    def _read(self, batch_id: str) -> list[dict[str, Any]]:
        path = _batch_dir() / f"{batch_id}.jsonl"
        if not path.is_file():
            raise FeaturelensError(f"The echo batch {batch_id} is not in {path.parent}; set "
                                   f"${BATCH_DIR_ENV} to the folder it was submitted to.")
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]

    async def find(self, label: str, since: float, request_count: int) -> list[str]:
        found = []
        for path in sorted(_batch_dir().glob("echo-batch-*.jsonl")):
            header = self._read(path.stem)[0]
            if header.get("label") == label and header.get("created", 0) >= since:
                found.append(path.stem)
        return found

    async def state(self, batch_id: str) -> BatchState:
        n = len(self._read(batch_id)) - 1
        return BatchState("completed", True, f"{n}/{n} done, 0 failed")

    async def results(self, batch_id: str) -> AsyncIterator[tuple[str, LLMResponse | None, str | None]]:
        for item in self._read(batch_id)[1:]:
            request = LLMRequest(messages=item.get("messages") or [], prompt=item.get("prompt"))
            yield item["custom_id"], echo(request), None


#: The echo declares itself as a hosted model would: a batch API, a prompt cache that serves
#: shared prefixes of 1,024 tokens and more, four features to an explanation request, at
#: least one output token billed, and list prices (USD per million tokens; the echo sends no
#: bill, the prices show how a priced provider is estimated).
#: Its counter counts what ``complete`` reports: a token is a word, with no chat framing.
ECHO_INFO = ProviderInfo(
    capabilities=EchoProvider.capabilities,
    token_counter=lambda model: TokenCounter("words (the echo bills a token a word)",
                                             lambda text: len(text.split()), per_message=0, primer=0),
    prompt_cache=lambda model: PromptCache(minimum=1024),
    batch_client=EchoBatches,
    features_per_request=4,
    min_output_tokens=1,
    prices={"v1": Price(input=3.00, output=15.00, cached_input=0.30)},
)
