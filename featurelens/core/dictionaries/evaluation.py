"""How good is a dictionary: reconstruction, sparsity, and what splicing it into the
model costs, stored per dictionary in ``dictionaries.metrics``.

Metrics (all over non-special tokens of the evaluation windows):

- ``l0``: mean number of active features per token.
- ``fvu``: fraction of variance unexplained, ``sum |t - t_hat|^2 / sum |t - mean(t)|^2``.
- ``ce_loss_clean`` / ``ce_loss_spliced`` / ``ce_loss_zero_ablation``: next-token
  cross-entropy of the model as is, with the hookpoint replaced by the reconstruction,
  and with it replaced by zeros (the baseline).
- ``ce_loss_recovered``: ``(zero - spliced) / (zero - clean)``; 1 is perfect.
- ``kl_div``: mean ``KL(clean || spliced)`` of the next-token distributions.
- ``dead_fraction``: features that never fired; ``dense_fraction``: features that fired
  on more than ``dense_threshold`` of the tokens.

Which positions are spliced is reported with the metrics (``splice``): by default
(``non-special``) special tokens (BOS, EOS, padding) keep their original activation,
since the dictionary was not trained on them and their huge norms would dominate the
loss; ``all`` splices every position, as SAELens and most other tools do, and usually
recovers much less. Both ablations (spliced and zero) follow the same convention.
"""

from __future__ import annotations

import json
from typing import Any

import polars as pl
import torch

from featurelens.core.errors import FeaturelensError

#: Which positions CE loss recovered and KL replace: non-special keeps BOS/EOS/padding.
SPLICE_MODES = ("non-special", "all")


@torch.no_grad()
def evaluate(dictionary: Any, backend: Any, *, hookpoint: str | None = None, corpus: str = "stdlib",
             tokens: int = 4096, context: int = 64, windows_per_batch: int = 8,
             hookpoint_out: str | None = None, dense_threshold: float = 0.1,
             progress: bool = True, splice: str = "non-special", split: str = "heldout") -> dict[str, Any]:
    """Evaluate ``dictionary`` on ``tokens`` tokens of ``corpus`` read by ``backend``.

    ``splice`` is ``non-special`` (special positions keep their activation) or ``all``;
    ``split`` the corpus documents read: by default the held-out ones, never trained on.
    """
    from featurelens.core.corpus.resolve import resolve_corpus
    from featurelens.core.corpus.split import split_corpus
    from featurelens.core.extraction.packing import pack, special_mask
    from featurelens.core.progress import progress as show_progress

    hookpoint = hookpoint or dictionary.hookpoint
    if not hookpoint:
        raise FeaturelensError("The dictionary does not say where it reads the model; pass --hookpoint.")
    transcoder = bool(getattr(dictionary, "is_transcoder", False))
    hookpoint_out = hookpoint_out or (dictionary.config.get("hookpoint_out") if transcoder else None)
    if transcoder and not hookpoint_out:
        raise FeaturelensError("A transcoder's output hookpoint is unknown; pass --hookpoint-out.")
    width = backend.hookpoint_width(hookpoint)
    if width != dictionary.d_in:
        raise FeaturelensError(
            f"The dictionary reads width {dictionary.d_in}, but {hookpoint} has width {width}; "
            "pick the model and hookpoint it was trained on."
        )
    if tokens < 1:
        raise FeaturelensError(f"--tokens must be positive, got {tokens}.")
    if splice not in SPLICE_MODES:
        raise FeaturelensError(f"--splice {splice!r} is not a convention; choose {' or '.join(SPLICE_MODES)}.")
    device = next(dictionary.parameters()).device
    dtype = next(dictionary.parameters()).dtype
    specials = set(backend.tokenizer.all_special_ids)
    n_windows = max(1, -(-tokens // context))
    windows = pack(split_corpus(resolve_corpus(corpus), split), backend.tokenizer, context=context,
                   max_windows=n_windows)
    totals = {"sse": 0.0, "l0": 0.0, "n": 0, "ce_clean": 0.0, "ce_spliced": 0.0, "ce_zero": 0.0,
              "kl": 0.0, "n_pred": 0}
    fires = torch.zeros(dictionary.d_sae, dtype=torch.long)
    sum_t = sum_t2 = None
    out_hp = hookpoint_out or hookpoint
    bar = show_progress(n_windows * context, unit="tok", desc="eval", enabled=progress)
    batch: list[list[int]] = []

    def flush(batch: list[list[int]]) -> None:
        nonlocal sum_t, sum_t2
        ids = torch.tensor(batch, dtype=torch.long)
        keep = ~special_mask(ids, specials)
        if hookpoint_out:
            acts = backend.run(ids, [hookpoint, hookpoint_out])
            clean = backend.logits_with_patch(ids, None).float()
        else:  # the clean forward pass also reads the hookpoint: one pass fewer
            acts = {}

            def record(act: torch.Tensor) -> torch.Tensor:
                acts[hookpoint] = act.clone()
                return act

            clean = backend.logits_with_patch(ids, hookpoint, record).float()
        x_full = acts[hookpoint].to(device, dtype)
        mask = keep.to(device)
        recon_full, l0_sum = _reconstruct(dictionary, x_full, mask, fires)
        target_full = acts[out_hp].to(device, recon_full.dtype)
        x_t, r_t = target_full[mask].double(), recon_full[mask].double()
        totals["sse"] += float((x_t - r_t).pow(2).sum())
        sum_t = x_t.sum(0) if sum_t is None else sum_t + x_t.sum(0)
        sum_t2 = x_t.pow(2).sum(0) if sum_t2 is None else sum_t2 + x_t.pow(2).sum(0)
        totals["n"] += int(mask.sum())
        totals["l0"] += l0_sum

        replace = keep if splice == "non-special" else torch.ones_like(keep)

        def spliced(act: torch.Tensor) -> torch.Tensor:
            m = replace.to(act.device)[..., None]
            return torch.where(m, recon_full.to(act.device, act.dtype), act)

        def zeroed(act: torch.Tensor) -> torch.Tensor:
            return torch.where(replace.to(act.device)[..., None], torch.zeros_like(act), act)

        logits_s = backend.logits_with_patch(ids, out_hp, spliced).float()
        logits_z = backend.logits_with_patch(ids, out_hp, zeroed).float()
        labels = ids[:, 1:].to(clean.device)
        for key, logits in (("ce_clean", clean), ("ce_spliced", logits_s), ("ce_zero", logits_z)):
            totals[key] += float(torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="sum"))
        log_p = torch.log_softmax(clean[:, :-1], dim=-1)
        log_q = torch.log_softmax(logits_s[:, :-1], dim=-1)
        totals["kl"] += float((log_p.exp() * (log_p - log_q)).sum())
        totals["n_pred"] += int(labels.numel())
        bar.update(ids.numel())

    for window in windows:
        batch.append(window.tokens)
        if len(batch) == windows_per_batch:
            flush(batch)
            batch = []
    if batch:
        flush(batch)
    bar.close()
    if totals["n"] == 0:
        raise FeaturelensError("The evaluation windows held only special tokens; give the corpus more text.")
    n = totals["n"]
    sst = float((sum_t2 - sum_t.pow(2) / n).sum())
    ce_clean, ce_spliced, ce_zero = (totals[k] / totals["n_pred"] for k in ("ce_clean", "ce_spliced", "ce_zero"))
    gap = ce_zero - ce_clean
    density = fires.double() / n
    return {
        "n_tokens": float(n),
        "l0": totals["l0"] / n,
        "mse": totals["sse"] / n,
        "fvu": totals["sse"] / sst if sst > 0 else float("nan"),
        "ce_loss_clean": ce_clean, "ce_loss_spliced": ce_spliced, "ce_loss_zero_ablation": ce_zero,
        "ce_loss_recovered": (ce_zero - ce_spliced) / gap if abs(gap) > 1e-12 else float("nan"),
        "kl_div": totals["kl"] / totals["n_pred"],
        "dead_fraction": float((fires == 0).double().mean()),
        "dense_fraction": float((density > dense_threshold).double().mean()),
        "splice": splice,
        "split": split,
    }


def _reconstruct(dictionary: Any, x_full: torch.Tensor, keep: torch.Tensor,
                 fires: torch.Tensor) -> tuple[torch.Tensor, float]:
    """The dictionary's output for ``x_full [b, s, d]``, the summed L0 over the kept
    positions, and (in place) how often each feature fired there."""
    flat = x_full.reshape(-1, x_full.shape[-1])
    acts = dictionary.encode_sparse(flat)
    active = (acts.values > 0) & keep.reshape(-1, 1)
    fires += torch.bincount(acts.indices[active].cpu(), minlength=dictionary.d_sae)
    recon = dictionary.decode_sparse(acts)
    skip = dictionary.skip_out(flat) if hasattr(dictionary, "skip_out") else None
    if skip is not None:
        recon = recon + skip
    return recon.reshape(*x_full.shape[:-1], recon.shape[-1]), float(active.sum())


def register_dictionary(store: Any, dictionary: Any, *, model_id: str, hookpoint: str,
                        source: str | None = None) -> str:
    """Make sure ``dictionary`` has a row in the store's ``dictionaries`` table; its id."""
    from featurelens.core.extraction.extractor import dictionary_id_of

    dictionary_id = dictionary_id_of(dictionary, model_id, hookpoint)
    row = pl.DataFrame([{
        "dictionary_id": dictionary_id, "model_id": model_id, "hookpoint": hookpoint,
        "architecture": dictionary.architecture, "d_in": dictionary.d_in, "d_sae": dictionary.d_sae,
        "format": getattr(dictionary, "format", None), "source": source,
        "config": json.dumps(dictionary.config, default=str),
    }])
    with store.transaction():
        store.insert("dictionaries", row, on_conflict="ignore")
        if hasattr(dictionary, "layer_rows"):  # a transcoder set: its layers, queryable in SQL
            store.insert("transcoder_layers", pl.DataFrame(dictionary.layer_rows(dictionary_id)),
                         on_conflict="ignore")
    return dictionary_id


def store_metrics(store: Any, dictionary_id: str, metrics: dict[str, float]) -> None:
    """Write ``metrics`` into ``dictionaries.metrics`` (NaN stored as null, never as 0)."""
    clean = {k: (None if isinstance(v, float) and v != v else v) for k, v in metrics.items()}
    with store.transaction():
        found = store.execute("SELECT count(*) FROM dictionaries WHERE dictionary_id = ?", [dictionary_id])
        if not found or found[0][0] == 0:
            raise FeaturelensError(
                f"No dictionary {dictionary_id!r} in the store; import it first "
                "(featurelens dictionaries import)."
            )
        store.execute("UPDATE dictionaries SET metrics = ? WHERE dictionary_id = ?",
                      [json.dumps(clean), dictionary_id])
