"""Logit effects: which output tokens a feature's decoder direction promotes and suppresses.

The direction is multiplied by the unembedding (with the final norm's scale folded in
on request), in chunks of features so a wide dictionary never makes a [d_sae, vocab]
matrix at once.
"""

from __future__ import annotations

from typing import Any

import torch


def logit_effects(dictionary: Any, backend: Any, *, n: int = 10, fold_final_norm: bool = True,
                  chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """``(top_ids, top_values, bottom_ids, bottom_values)``, each ``[d_sae, n]``; None if undefined.

    Undefined when the dictionary writes to a space other than the residual stream
    (its output width is not d_model) or cannot give decoder directions.
    """
    try:
        directions = dictionary.decoder_directions()
    except NotImplementedError:
        return None
    if directions.shape[-1] != backend.d_model:
        return None
    w_u = backend.unembedding(fold_final_norm=fold_final_norm).to(backend.device)
    n = min(n, w_u.shape[1])
    tops, top_vals, bottoms, bottom_vals = [], [], [], []
    for start in range(0, directions.shape[0], chunk):
        logits = directions[start:start + chunk].to(w_u.device, torch.float32) @ w_u
        high = logits.topk(n, dim=1)
        low = logits.topk(n, dim=1, largest=False)
        tops.append(high.indices.cpu())
        top_vals.append(high.values.cpu())
        bottoms.append(low.indices.cpu())
        bottom_vals.append(low.values.cpu())
    return torch.cat(tops), torch.cat(top_vals), torch.cat(bottoms), torch.cat(bottom_vals)
