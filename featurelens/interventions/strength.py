"""Steering strength for a fixed effect size: the KL divergence it causes.

Features differ in scale, so one strength over-steers some and does nothing to others.
As in EleutherAI's intervention scoring (arXiv 2410.13928), the strength is chosen per
feature so that KL(clean || steered) of the next-token distribution, averaged over the
prompts' last positions, equals a target: a bracket is grown by doubling, then bisected.
"""

from __future__ import annotations

from typing import Any

import torch

from featurelens.core.errors import FeaturelensError
from featurelens.interventions.hooks import FeatureEditor


def _batch(backend: Any, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and the index of each prompt's last token."""
    rows = [backend.tokenizer(p).input_ids for p in prompts]
    if any(not r for r in rows):
        raise FeaturelensError("A steering prompt is empty; give every prompt some text.")
    width = max(len(r) for r in rows)
    pad = backend.tokenizer.pad_token_id or 0
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=backend.device)
    last = torch.tensor([len(r) - 1 for r in rows], device=backend.device)
    return ids, last


def next_token_kl(backend: Any, dictionary: Any, feature: int, strength: float, ids: torch.Tensor,
                  last: torch.Tensor, clean: torch.Tensor | None = None) -> float:
    """Mean KL(clean || steered) at the last prompt positions, adding ``strength`` x direction."""
    rows = torch.arange(ids.shape[0], device=ids.device)
    with torch.no_grad():
        if clean is None:
            clean = torch.log_softmax(backend.run_full(ids).float()[rows, last], dim=-1)
        with FeatureEditor(backend, dictionary, {feature: float(strength)}):
            steered = torch.log_softmax(backend.run_full(ids).float()[rows, last], dim=-1)
    return float((clean.exp() * (clean - steered)).sum(dim=-1).mean())


def strength_for_kl(backend: Any, dictionary: Any, feature: int, prompts: list[str], target_kl: float,
                    *, start: float = 1.0, max_strength: float = 1e4, iterations: int = 14) -> tuple[float, float]:
    """(strength, the KL it reaches): the smallest positive strength whose KL hits ``target_kl``.

    If even ``max_strength`` stays below the target (a dead direction), that strength
    and its KL are returned, so the caller can report the shortfall.
    """
    if target_kl <= 0:
        raise FeaturelensError(f"The target KL must be positive, not {target_kl}; use e.g. kl=1.")
    ids, last = _batch(backend, prompts)
    rows = torch.arange(ids.shape[0], device=ids.device)
    with torch.no_grad():
        clean = torch.log_softmax(backend.run_full(ids).float()[rows, last], dim=-1)
    low, high = 0.0, float(start)
    kl_high = next_token_kl(backend, dictionary, feature, high, ids, last, clean)
    while kl_high < target_kl and high < max_strength:
        low, high = high, min(high * 2.0, max_strength)
        kl_high = next_token_kl(backend, dictionary, feature, high, ids, last, clean)
    if kl_high < target_kl:
        return high, kl_high
    best, best_kl = high, kl_high
    for _ in range(iterations):
        middle = (low + high) / 2
        kl = next_token_kl(backend, dictionary, feature, middle, ids, last, clean)
        if kl >= target_kl:
            high, best, best_kl = middle, middle, kl
        else:
            low = middle
        if abs(best_kl - target_kl) < 0.01 * target_kl:
            break
    return best, best_kl
