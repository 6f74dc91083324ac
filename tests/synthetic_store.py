"""A real DuckDB feature store filled with realistic synthetic rows, for browser,
export and pipeline-summary tests (and the serve benchmark at 1M features).

Everything goes through :meth:`Store.insert`, like the extraction and labeling stages
write it: a model, a dictionary, tokenised sequences, per-feature statistics with
histograms, quantiles and logit effects, top / quantile / random examples,
explanations and simulation scores. Columns are built as Arrow arrays from numpy,
so a million features take seconds, not minutes.

Corpus text deliberately contains HTML (``<script>``, ``&amp;``, quotes) so that
pages which forget to escape it fail their tests.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa

import featurelens
from featurelens.core.store.database import Store

WORDS = [
    " the", " cat", " sat", " on", " mat", " dog", " ran", " 1984", " 42", "(", ")", "[", "]",
    " <script>alert(1)</script>", " &amp;", ' "quoted"', " it's", "\n", " über", " 数据",
    " def", " return", " x", " +", " y", ".", ",", " and", " of", " a",
]
TOPICS = ["cats", "dogs", "numbers", "brackets", "code", "punctuation", "html tags", "quotes"]


@dataclass(frozen=True)
class SyntheticStore:
    """What was written, so tests can assert against it."""

    model_id: str
    dictionary_id: str
    corpus_id: str
    n_features: int
    seq_len: int
    n_explained: int


def explanation_text(feature: int) -> str:
    """The explanation written for ``feature`` (deterministic, searchable)."""
    return f"{TOPICS[feature % len(TOPICS)]} near feature {feature}"


def _lists(values: np.ndarray, width: int, type_: pa.DataType) -> pa.Array:
    flat = pa.array(values.reshape(-1), type=type_)
    offsets = pa.array(np.arange(0, values.size + 1, width, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, flat)


def _str_lists(values: list[str], width: int) -> pa.Array:
    offsets = pa.array(np.arange(0, len(values) + 1, width, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(values, type=pa.string()))


def fill_store(
    store: Store,
    *,
    n_features: int = 40,
    n_sequences: int = 64,
    seq_len: int = 16,
    n_top: int = 5,
    n_quantile: int = 4,
    n_random: int = 3,
    explained_every: int = 1,
    dictionary_id: str = "smollm2-l6-topk",
    seed: int = 0,
) -> SyntheticStore:
    """Write one model, one dictionary and ``n_features`` features into ``store``.

    Every ``explained_every``-th feature gets an explanation and a simulation score;
    feature 1 (when explained) gets a second explainer and a second score so pages
    show several. Feature 3 never fires (density 0, no examples): the dead-feature case.
    """
    rng = np.random.default_rng(seed)
    model_id = "smollm2-135m"
    corpus_id = "synthetic-corpus"
    n_words = len(WORDS)
    with store.transaction():
        store.insert("models", pa.table({
            "model_id": [model_id], "backend": ["hf"], "source": ["/models/smollm2"],
            "n_layers": [30], "d_model": [576], "vocab_size": [49152],
            "config": [json.dumps({"dtype": "float32"})],
        }))
        store.insert("dictionaries", pa.table({
            "dictionary_id": [dictionary_id], "model_id": [model_id],
            "hookpoint": ["blocks.6.hook_resid_post"], "architecture": ["topk"],
            "d_in": [576], "d_sae": [max(n_features, 1)], "format": [None], "source": [None],
            "config": [json.dumps({"k": 32})], "metrics": [json.dumps({"l0": 32, "fvu": 0.21})],
        }))
        token_ids = rng.integers(0, n_words, size=(n_sequences, seq_len))
        store.insert("sequences", pa.table({
            "corpus_id": pa.array([corpus_id] * n_sequences),
            "sequence_id": pa.array(np.arange(n_sequences, dtype=np.int64)),
            "model_id": pa.array([model_id] * n_sequences),
            "tokens": _lists(token_ids.astype(np.int32), seq_len, pa.int32()),
            "token_strs": _str_lists([WORDS[i] for i in token_ids.reshape(-1)], seq_len),
            "document": pa.array([f"synthetic.txt#{i}" for i in range(n_sequences)]),
        }))
        max_act = _write_features(store, rng, dictionary_id, corpus_id, n_features)
        _write_examples(store, rng, dictionary_id, corpus_id, max_act, n_sequences, seq_len,
                        {"top": n_top, "quantile": n_quantile, "random": n_random})
        n_explained = _write_labels(store, rng, dictionary_id, n_features, explained_every)
    return SyntheticStore(model_id, dictionary_id, corpus_id, n_features, seq_len, n_explained)


def _write_features(store: Store, rng: np.random.Generator, dictionary_id: str, corpus_id: str,
                    n: int) -> np.ndarray:
    n_tokens = 1_000_000
    density = rng.uniform(1e-4, 0.05, size=n)
    max_act = rng.uniform(1.0, 12.0, size=n)
    if n > 3:
        density[3] = 0.0
    fire = np.round(density * n_tokens).astype(np.int64)
    bins = 10
    edges = np.linspace(0.0, 1.0, bins + 1)[None, :] * max_act[:, None]
    counts = np.sort(rng.integers(0, 1000, size=(n, bins)), axis=1)[:, ::-1].astype(np.int64)
    levels = np.array([0.1, 0.5, 0.9, 0.99])[None, :] * max_act[:, None]
    top_idx = rng.integers(0, len(WORDS), size=(n, 5))
    bottom_idx = rng.integers(0, len(WORDS), size=(n, 5))
    dead = fire == 0
    store.insert("features", pa.table({
        "dictionary_id": pa.array([dictionary_id] * n),
        "feature": pa.array(np.arange(n, dtype=np.int32)),
        "corpus_id": pa.array([corpus_id] * n),
        "n_tokens": pa.array(np.full(n, n_tokens, dtype=np.int64)),
        "fire_count": pa.array(fire),
        "density": pa.array(density),
        "max_activation": pa.array(np.where(dead, np.nan, max_act), mask=dead),
        "mean_activation": pa.array(max_act * 0.3, mask=dead),
        "quantiles": _lists(levels, 4, pa.float64()),
        "histogram_edges": _lists(edges, bins + 1, pa.float64()),
        "histogram_counts": _lists(np.where(dead[:, None], 0, counts), bins, pa.int64()),
        "top_logits": _str_lists([WORDS[i] for i in top_idx.reshape(-1)], 5),
        "top_logit_values": _lists(np.sort(rng.uniform(0.5, 3, (n, 5)))[:, ::-1].copy(), 5,
                                   pa.float64()),
        "bottom_logits": _str_lists([WORDS[i] for i in bottom_idx.reshape(-1)], 5),
        "bottom_logit_values": _lists(np.sort(rng.uniform(-3, -0.5, (n, 5))), 5, pa.float64()),
    }))
    return max_act


def _write_examples(store: Store, rng: np.random.Generator, dictionary_id: str, corpus_id: str,
                    max_act: np.ndarray, n_sequences: int, seq_len: int,
                    per_kind: dict[str, int]) -> None:
    n = max_act.size
    live = np.array([f for f in range(n) if f != 3], dtype=np.int32)
    for kind, count in per_kind.items():
        if count == 0 or live.size == 0:
            continue
        rows = live.size * count
        feature = np.repeat(live, count)
        rank = np.tile(np.arange(count, dtype=np.int32), live.size)
        acts = np.zeros((rows, seq_len), dtype=np.float32)
        if kind != "random":
            peak = rng.integers(0, seq_len, size=rows)
            step = 0.1 if kind == "top" else 0.2
            scale = (max_act[feature] * np.clip(1.0 - rank * step, 0.05, 1.0)).astype(np.float32)
            acts[np.arange(rows), peak] = scale
            acts[np.arange(rows), (peak + 1) % seq_len] = scale * 0.4
        max_pos = acts.argmax(axis=1).astype(np.int32)
        store.insert("examples", pa.table({
            "dictionary_id": pa.array([dictionary_id] * rows),
            "feature": pa.array(feature),
            "kind": pa.array([kind] * rows),
            "rank": pa.array(rank),
            "corpus_id": pa.array([corpus_id] * rows),
            "sequence_id": pa.array(rng.integers(0, n_sequences, size=rows).astype(np.int64)),
            "activations": _lists(acts, seq_len, pa.float32()),
            "max_activation": pa.array(acts.max(axis=1)),
            "max_position": pa.array(max_pos),
            "quantile": pa.array(rank if kind == "quantile" else np.zeros(rows, np.int32),
                                 mask=np.full(rows, kind != "quantile")),
        }))


def _write_labels(store: Store, rng: np.random.Generator, dictionary_id: str, n: int,
                  every: int) -> int:
    features = [f for f in range(0, n, every) if f != 3]
    ids, texts, explainers = [], [], []
    for f in features:
        ids.append(hashlib.sha1(f"{dictionary_id}/{f}/default".encode()).hexdigest()[:16])
        texts.append(explanation_text(f))
        explainers.append("default")
    if 1 in features:
        ids.append(hashlib.sha1(f"{dictionary_id}/1/contrastive".encode()).hexdigest()[:16])
        texts.append("alternative <b>label</b> & more for feature 1")
        explainers.append("contrastive")
    feats = features + ([1] if 1 in features else [])
    m = len(ids)
    store.insert("explanations", pa.table({
        "explanation_id": pa.array(ids), "dictionary_id": pa.array([dictionary_id] * m),
        "feature": pa.array(np.array(feats, dtype=np.int32)),
        "explainer": pa.array(explainers), "llm": pa.array(["local:smollm2"] * m),
        "text": pa.array(texts), "options": pa.array(["{}"] * m),
    }))
    scores = rng.uniform(-0.1, 0.95, size=m)
    store.insert("scores", pa.table({
        "score_id": pa.array([i + ":simulation" for i in ids]), "explanation_id": pa.array(ids),
        "dictionary_id": pa.array([dictionary_id] * m),
        "feature": pa.array(np.array(feats, dtype=np.int32)),
        "scorer": pa.array(["simulation"] * m), "llm": pa.array(["local:smollm2"] * m),
        "score": pa.array(scores), "status": pa.array(["ok"] * m),
        "metrics": pa.array([json.dumps({"correlation": float(s)}) for s in scores]),
        "n_parse_failures": pa.array(np.zeros(m, dtype=np.int32)),
    }))
    return len(features)


def filled_store(path: Path, n_features: int) -> Path:
    """A new store at ``path`` with ``n_features`` synthetic features."""
    with featurelens.open_store(path) as store:
        fill_store(store, n_features=n_features)
    return path


@contextmanager
def serving(path: Path) -> Iterator[str]:
    """``featurelens serve`` on ``path`` in a thread on a free loopback port; yields its URL."""
    from featurelens.browser.server import make_server, url_of
    from featurelens.testing.servers import start_in_thread


    server = make_server(path, "127.0.0.1", 0)
    start_in_thread(server)
    try:
        yield url_of(server)
    finally:
        server.shutdown()
        server.server_close()
        server.browser_data.close()
