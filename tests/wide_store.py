"""A store as wide as a real dictionary (a million features), written in bulk by DuckDB.

Extraction at this width is its own problem; the per-feature stages after it (token
lookup, token-check, record reading, exports, the batch API) need only a store of the
right shape. Every row here is generated inside DuckDB from ``range()`` (no Python
object per row), so 1,048,576 features with twenty examples each take about a minute
and flat memory. Features whose index is a multiple of ``dead_every`` never fire.

Each fired feature ``f`` has a planted token: its top and quantile windows peak on
``WORDS[f % len(WORDS)]``, so token lookup names it and token-check can score it.
"""

from __future__ import annotations

from pathlib import Path

import featurelens
from featurelens.core.store.database import Store

WORDS = [" the", " cat", " sat", " on", " mat", " dog", " ran", " 1984", " 42", "(", ")", "[", "]",
         " über", " 数据", " def", " return", " x", " +", " y", ".", ",", " and", " of", " a",
         " house", " river", " green", " seven", " quickly", " Paris", " music"]


def fill_wide(store: Store, *, n_features: int = 1 << 20, n_sequences: int = 8192, seq_len: int = 32,
              n_top: int = 10, n_quantile: int = 5, n_random: int = 5, dead_every: int = 10,
              dictionary_id: str = "wide", chunk: int = 131_072) -> None:
    """Write a model, a dictionary, sequences, features and examples (see the module)."""
    words = "[" + ", ".join("'" + w.replace("'", "''") + "'" for w in WORDS) + "]"
    n_words = len(WORDS)
    con = store.con
    with store.transaction():
        con.execute("INSERT INTO models (model_id, backend, source, n_layers, d_model, vocab_size, config) "
                    "VALUES ('wide-model', 'hf', 'synthetic', 4, 64, 32, '{}')")
        con.execute("INSERT INTO dictionaries (dictionary_id, model_id, hookpoint, architecture, d_in, d_sae, "
                    "config, metrics) VALUES (?, 'wide-model', 'blocks.3.hook_resid_post', 'topk', 64, ?, "
                    "'{\"k\": 64}', '{}')", [dictionary_id, n_features])
        # sequence s, position p holds word (s * 7 + p * 13) % n_words
        con.execute(
            f"INSERT INTO sequences (corpus_id, sequence_id, model_id, tokens, token_strs, document) "
            f"SELECT 'wide-corpus', s, 'wide-model', "
            f"list_transform(range({seq_len}), lambda p: ((s * 7 + p * 13) % {n_words})::INTEGER), "
            f"list_transform(range({seq_len}), lambda p: {words}[((s * 7 + p * 13) % {n_words}) + 1]), "
            f"'wide.txt#' || s FROM range({n_sequences}) t(s)")
    for start in range(0, n_features, chunk):
        stop = min(start + chunk, n_features)
        with store.transaction():
            con.execute(
                f"INSERT INTO features (dictionary_id, feature, corpus_id, n_tokens, fire_count, density, "
                f"max_activation, mean_activation, quantiles, histogram_edges, histogram_counts, "
                f"top_logits, top_logit_values, bottom_logits, bottom_logit_values) "
                f"SELECT ?, f, 'wide-corpus', {n_sequences * seq_len}, fc, fc / {n_sequences * seq_len}, "
                f"CASE WHEN fc > 0 THEN m END, CASE WHEN fc > 0 THEN m / 3 END, "
                f"CASE WHEN fc > 0 THEN [m * 0.1, m * 0.5, m * 0.9, m * 0.99] END, "
                f"CASE WHEN fc > 0 THEN [0.0, m / 2, m] END, CASE WHEN fc > 0 THEN [fc - fc // 3, fc // 3] END, "
                f"[{words}[f % {n_words} + 1], {words}[(f + 1) % {n_words} + 1]], [2.0, 1.0], "
                f"[{words}[(f + 5) % {n_words} + 1]], [-1.0] "
                f"FROM (SELECT f, CASE WHEN f % {dead_every} = 0 THEN 0 ELSE 1 + hash(f) % 500 END AS fc, "
                f"1.0 + (hash(f * 3) % 1000) / 100.0 AS m FROM range({start}, {stop}) t(f))",
                [dictionary_id])
            for kind, count in (("top", n_top), ("quantile", n_quantile), ("random", n_random)):
                if not count:
                    continue
                # a window of the planted word: sequence s holds it at p where (s*7 + p*13) % W == w
                peak = (f"list_transform(range({seq_len}), lambda p: CASE WHEN (seq * 7 + p * 13) % {n_words} "
                        f"= f % {n_words} THEN (m * (1.0 - r * 0.05))::FLOAT ELSE 0.0::FLOAT END)")
                acts = peak if kind != "random" else f"list_transform(range({seq_len}), lambda p: 0.0::FLOAT)"
                con.execute(
                    f"INSERT INTO examples (dictionary_id, feature, kind, rank, corpus_id, sequence_id, "
                    f"activations, max_activation, max_position, quantile) "
                    f"SELECT ?, f, '{kind}', r, 'wide-corpus', seq, a, list_max(a), "
                    f"(list_position(a, list_max(a)) - 1)::INTEGER, "
                    f"{'(r % 5)::INTEGER' if kind == 'quantile' else 'NULL'} "
                    f"FROM (SELECT f, r, seq, m, {acts} AS a FROM (SELECT f, r, "
                    f"(hash(f * 31 + r) % {n_sequences})::BIGINT AS seq, "
                    f"1.0 + (hash(f * 3) % 1000) / 100.0 AS m "
                    f"FROM range({start}, {stop}) t(f), range({count}) u(r) "
                    f"WHERE f % {dead_every} <> 0)) ORDER BY f, r",
                    [dictionary_id])


def wide_store(path: Path, **options: int) -> Path:
    """A new store at ``path`` filled by :func:`fill_wide`."""
    with featurelens.open_store(path) as store:
        fill_wide(store, **options)
    return path
