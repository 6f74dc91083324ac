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

How many features get effects, and when, is the extraction's choice (``--logit-effects``):
all of them, only the features that fired (a wide dictionary over a short corpus is mostly
features that never fired, whose pages are empty anyway), none, or ``lazy``: none during
extraction, each feature's computed and stored the first time a page, an export or an
explainer needs it (:mod:`featurelens.core.lazy_logits`). The default,
``auto`` (:func:`choose_mode`), is ``all`` where the product is cheap (on a GPU, or up to
:data:`EAGER_MAX_FEATURES` features on a CPU) and ``lazy`` above.
"""

from __future__ import annotations

from typing import Any

import torch

from featurelens.core.errors import FeaturelensError

#: Bytes of float32 logits computed at once (rows = CHUNK_BYTES / (4 * vocab)).
CHUNK_BYTES = 64 * 2**20
#: Promoted (and suppressed) tokens kept per feature.
N_TOKENS = 10
#: Logits per block when finding a row's extremes (:func:`extremes`).
BLOCK = 256
#: The choices of ``--logit-effects``.
MODES = ("auto", "all", "fired", "lazy", "none")
#: The widest dictionary ``auto`` gives effects to during a CPU extraction: the product
#: measured 0.6-2.7 ms a feature on 2 CPU cores, so 10-45 s here.
EAGER_MAX_FEATURES = 16384


def choose_mode(mode: str, d_sae: int, device: Any) -> str:
    """``mode`` with ``auto`` decided: ``all`` on a GPU or for at most
    :data:`EAGER_MAX_FEATURES` features, ``lazy`` for a wider dictionary on a CPU (where
    the product would take minutes to half an hour, mostly for features nobody opens)."""
    if mode not in MODES:
        raise FeaturelensError(f"--logit-effects must be one of {', '.join(MODES)}, not {mode!r}; "
                               "pick one of those.")
    if mode != "auto":
        return mode
    on_gpu = torch.device(device).type not in ("cpu", "meta")
    return "all" if on_gpu or d_sae <= EAGER_MAX_FEATURES else "lazy"


def defined(dictionary: Any, backend: Any) -> bool:
    """Whether ``dictionary`` has logit effects: it gives decoder directions, and they live
    in the residual stream (their width is the model's d_model)."""
    try:
        directions = dictionary.decoder_directions()
    except NotImplementedError:
        return False
    return directions.shape[-1] == backend.d_model


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


def effects_of_rows(rows: torch.Tensor, w_u: torch.Tensor, n: int
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(top_ids, top_values, bottom_ids, bottom_values)`` of decoder rows ``[m, d_model]``
    through the unembedding ``w_u`` ``[d_model, vocab]`` (on its device), each ``[m, n]`` on
    the CPU: one chunk's work, shared by the eager and the lazy path so both store the
    same values."""
    logits = rows.to(w_u.device, torch.float32) @ w_u
    top_values, top_ids = extremes(logits, n, largest=True)
    bottom_values, bottom_ids = extremes(logits, n, largest=False)
    return top_ids.cpu(), top_values.cpu(), bottom_ids.cpu(), bottom_values.cpu()


def chunk_rows(vocab: int) -> int:
    """Features at once so that a chunk's logits stay near :data:`CHUNK_BYTES`."""
    return max(1, CHUNK_BYTES // (4 * vocab))


def logit_effects(dictionary: Any, backend: Any, *, n: int = N_TOKENS, fold_final_norm: bool = True,
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
    chunk = chunk or chunk_rows(vocab)
    top_ids = torch.full((d_sae, n), -1, dtype=torch.long)
    top_vals = torch.full((d_sae, n), torch.nan, dtype=torch.float32)
    bottom_ids, bottom_vals = top_ids.clone(), top_vals.clone()
    rows = torch.arange(d_sae) if features is None else features.cpu().long()
    for start in range(0, rows.numel(), chunk):
        part = rows[start:start + chunk]
        block = (directions[int(part[0]):int(part[-1]) + 1] if features is None
                 else directions[part.to(directions.device)])
        top_ids[part], top_vals[part], bottom_ids[part], bottom_vals[part] = effects_of_rows(block, w_u, n)
    return top_ids, top_vals, bottom_ids, bottom_vals
