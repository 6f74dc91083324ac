"""Logit effects: which output tokens a feature's decoder direction promotes and suppresses.

The direction is multiplied by the unembedding (with the final norm's scale folded in
on request), a chunk of features at a time on the model's device, so a wide dictionary
never makes a ``[d_sae, vocab]`` matrix: a chunk's ``[rows, vocab]`` logits stay
about :data:`CHUNK_BYTES`.

This phase is one matrix product of ``d_sae x d_model x vocab`` (about 58 TFLOP at a
million features on SmolLM2's 49,152-token vocabulary), so on a CPU it is the arithmetic
that costs, and nothing else may: the top and bottom ``n`` of each row are found by
blocks (:func:`extremes`), which reads each logit once instead of running two full
top-k selections over the vocabulary, and float32 is kept (bf16 matmul has no fast path
on CPUs without bf16 instructions, and would change the stored values).

How many features get effects is the extraction's choice (``--logit-effects``): all of
them (the default: pages, exports and the explainers' logit lines then have them for
every feature), only the features that fired (a wide dictionary over a short corpus is
mostly features that never fired, whose pages are empty anyway), or none.
"""

from __future__ import annotations

from typing import Any

import torch

#: Bytes of float32 logits computed at once (rows = CHUNK_BYTES / (4 * vocab)).
CHUNK_BYTES = 64 * 2**20
#: Logits per block when finding a row's extremes (:func:`extremes`).
BLOCK = 256


def extremes(logits: torch.Tensor, n: int, largest: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(values, indices)`` of the ``n`` largest (or smallest) of each row, sorted: the
    values :meth:`torch.Tensor.topk` gives (of equal logits, another token may be named).

    The vocabulary is cut into blocks of :data:`BLOCK`; the ``n`` extreme values of a row
    lie in the ``n`` blocks with the most extreme maxima (minima): any other block's best
    is beaten by those ``n`` blocks' bests. So a top-k runs over ``n x BLOCK`` candidates
    (plus the ragged tail) instead of the whole row.
    """
    rows, width = logits.shape
    whole = width // BLOCK * BLOCK
    if whole // BLOCK <= n:  # too few blocks to gain anything
        return logits.topk(n, dim=1, largest=largest)
    blocks = logits[:, :whole].view(rows, whole // BLOCK, BLOCK)
    best = blocks.amax(dim=2) if largest else blocks.amin(dim=2)
    chosen = best.topk(n, dim=1, largest=largest).indices  # [rows, n]
    chosen = chosen.sort(dim=1).values  # candidates in vocabulary order: ties resolve as in topk
    candidates = blocks.gather(1, chosen[:, :, None].expand(rows, n, BLOCK)).reshape(rows, n * BLOCK)
    ids = (chosen[:, :, None] * BLOCK + torch.arange(BLOCK, device=logits.device)).reshape(rows, n * BLOCK)
    if whole < width:
        candidates = torch.cat([candidates, logits[:, whole:]], dim=1)
        tail = torch.arange(whole, width, device=logits.device).expand(rows, width - whole)
        ids = torch.cat([ids, tail], dim=1)
    values, where = candidates.topk(n, dim=1, largest=largest)
    return values, ids.gather(1, where)


def logit_effects(dictionary: Any, backend: Any, *, n: int = 10, fold_final_norm: bool = True,
                  chunk: int | None = None, features: torch.Tensor | None = None,
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """``(top_ids, top_values, bottom_ids, bottom_values)``, each ``[d_sae, n]`` on the CPU;
    None if undefined.

    Undefined when the dictionary writes to a space other than the residual stream
    (its output width is not d_model) or cannot give decoder directions. ``chunk``
    (features at once) defaults to what keeps a chunk's logits near :data:`CHUNK_BYTES`.
    ``features`` (ascending ids) limits the work to those rows; the others get ids -1
    and NaN values.
    """
    try:
        directions = dictionary.decoder_directions()
    except NotImplementedError:
        return None
    if directions.shape[-1] != backend.d_model:
        return None
    w_u = backend.unembedding(fold_final_norm=fold_final_norm).to(backend.device)
    vocab = w_u.shape[1]
    n = min(n, vocab)
    d_sae = directions.shape[0]
    chunk = chunk or max(1, CHUNK_BYTES // (4 * vocab))
    top_ids = torch.full((d_sae, n), -1, dtype=torch.long)
    top_vals = torch.full((d_sae, n), torch.nan, dtype=torch.float32)
    bottom_ids, bottom_vals = top_ids.clone(), top_vals.clone()
    rows = torch.arange(d_sae) if features is None else features.cpu().long()
    for start in range(0, rows.numel(), chunk):
        part = rows[start:start + chunk]
        block = (directions[int(part[0]):int(part[-1]) + 1] if features is None
                 else directions[part.to(directions.device)])
        logits = block.to(w_u.device, torch.float32) @ w_u
        values, ids = extremes(logits, n, largest=True)
        top_vals[part], top_ids[part] = values.cpu(), ids.cpu()
        values, ids = extremes(logits, n, largest=False)
        bottom_vals[part], bottom_ids[part] = values.cpu(), ids.cpu()
    return top_ids, top_vals, bottom_ids, bottom_vals
