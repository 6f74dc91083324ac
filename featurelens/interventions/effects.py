"""Causal effects: what ablating each feature does to the next-token distribution.

Decoder-direction logit effects (extraction's ``top_logits``) say what a feature's
direction would write if nothing came after the hookpoint. This measures what the model
actually does: for each feature, its top-activating stored windows are run clean and
with the feature ablated (error term kept), and at every position where it fired we
record KL(clean || ablated) and how each output token's probability moved. Rows go to
``feature_effects``; features already measured with the same options are skipped, so a
killed run resumes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import torch

from featurelens.core.errors import FeaturelensError
from featurelens.core.store.database import Store
from featurelens.interventions.hooks import FeatureEditor
from featurelens.interventions.targets import Target


@dataclass
class EffectsResult:
    measured: int
    skipped: int
    without_examples: int
    seconds: float


def measure_feature(target: Target, feature: int, windows: list[list[int]],
                    activations: list[list[float]], n_tokens: int = 10) -> dict[str, Any] | None:
    """Effect of ablating ``feature`` on ``windows`` (token ids) at its firing positions."""
    backend = target.backend
    fired = torch.tensor([[float(a or 0.0) > 0 for a in row] for row in activations])
    if not bool(fired.any()):
        return None
    # Later positions cannot change the next-token distribution at a firing position.
    end = int(fired.any(dim=0).nonzero().max()) + 1
    fired = fired[:, :end]
    ids = torch.tensor([row[:end] for row in windows], dtype=torch.long, device=backend.device)
    editor = FeatureEditor(backend, target.dictionary, {feature: "ablate"})
    with torch.no_grad():
        clean = torch.log_softmax(backend.run_full(ids).float(), dim=-1)
        with editor:
            ablated = torch.log_softmax(backend.run_full(ids).float(), dim=-1)
    mask = fired.to(clean.device)
    clean_at, ablated_at = clean[mask], ablated[mask]  # [positions, vocab]
    p_clean = clean_at.exp()
    kl = (p_clean * (clean_at - ablated_at)).sum(dim=-1).clamp_min(0.0)
    delta = (p_clean - ablated_at.exp()).mean(dim=0)  # > 0: the feature promotes the token
    k = min(n_tokens, delta.numel())
    up = delta.topk(k)
    down = (-delta).topk(k)
    decode = backend.tokenizer.decode
    return {
        "feature": int(feature), "n_windows": len(windows), "n_positions": int(mask.sum()),
        "mean_kl": float(kl.mean()), "max_kl": float(kl.max()),
        "promoted_tokens": [decode([t]) for t in up.indices.tolist()],
        "promoted_deltas": [float(v) for v in up.values.tolist()],
        "suppressed_tokens": [decode([t]) for t in down.indices.tolist()],
        "suppressed_deltas": [float(v) for v in down.values.tolist()],
    }


def _features(store: Store, dictionary_id: str, where: str | None, limit: int | None) -> list[int]:
    from featurelens.core.selection import Selection

    condition, params = Selection(where, dictionary_id, None).condition()
    limit_sql = f" LIMIT {int(limit)}" if limit is not None else ""
    rows = store.execute(f"SELECT feature FROM features WHERE {condition} AND fire_count > 0 "
                         f"ORDER BY feature{limit_sql}", params)
    return [int(r[0]) for r in rows]


def compute_effects(store_path: str | Path | None, target: Target, *, where: str | None = None,
                    limit: int | None = None, n_windows: int = 8, n_tokens: int = 10,
                    flush_every: int = 64, progress: bool = True) -> EffectsResult:
    """Measure and store the ablation effect of the selected features of ``target``."""
    import sys
    import time

    from tqdm import tqdm

    if n_windows < 1 or n_tokens < 1:
        raise FeaturelensError("--windows and --tokens must be at least 1; raise them.")
    started = time.perf_counter()
    options = {"n_windows": int(n_windows), "n_tokens": int(n_tokens)}
    options_json = json.dumps(options, sort_keys=True)
    with Store.open(store_path) as store:
        known = store.execute("SELECT count(*) FROM features WHERE dictionary_id = ?", [target.dictionary_id])
        if not known[0][0]:
            raise FeaturelensError(
                f"The store has no features of dictionary {target.dictionary_id}; run featurelens "
                "extract with this model, hookpoint and dictionary first.")
        wanted = _features(store, target.dictionary_id, where, limit)
        done = {int(r[0]) for r in store.execute(
            "SELECT feature FROM feature_effects WHERE dictionary_id = ? AND options = ?::JSON",
            [target.dictionary_id, options_json])}
        todo = [f for f in wanted if f not in done]
        pending: list[dict[str, Any]] = []
        measured = without = 0

        def flush() -> None:
            if not pending:
                return
            frame = pl.DataFrame(pending).with_columns(
                pl.lit(target.dictionary_id).alias("dictionary_id"), pl.lit(options_json).alias("options"))
            with store.transaction():
                store.execute(
                    "DELETE FROM feature_effects WHERE dictionary_id = ? AND list_contains(?, feature)",
                    [target.dictionary_id, [row["feature"] for row in pending]])
                store.insert("feature_effects", frame)
            pending.clear()

        bar = tqdm(todo, desc="effects", unit="feat", file=sys.stderr, disable=not progress,
                   dynamic_ncols=True)
        for feature in bar:
            rows = store.execute(
                "SELECT s.tokens, x.activations FROM examples x JOIN sequences s "
                "ON s.corpus_id = x.corpus_id AND s.sequence_id = x.sequence_id "
                "WHERE x.dictionary_id = ? AND x.feature = ? AND x.kind = 'top' AND x.rank < ? "
                "ORDER BY x.rank", [target.dictionary_id, feature, int(n_windows)])
            by_length: dict[int, list[tuple[list[int], list[float]]]] = {}
            for tokens, acts in rows:
                by_length.setdefault(len(tokens), []).append((list(tokens), list(acts)))
            if not by_length:
                without += 1
                continue
            # Windows of one length are batched; extraction writes one length per corpus.
            length = max(by_length, key=lambda n: len(by_length[n]))
            group = by_length[length]
            row = measure_feature(target, feature, [g[0] for g in group], [g[1] for g in group], n_tokens)
            if row is None:
                without += 1
                continue
            pending.append(row)
            measured += 1
            if len(pending) >= flush_every:
                flush()
        flush()
        bar.close()
    return EffectsResult(measured, len(wanted) - len(todo), without, time.perf_counter() - started)
