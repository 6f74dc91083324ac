"""Everything extraction accumulates, and how one batch of activations updates it.

A batch's activations are encoded by the dictionary into sparse (feature, value) pairs
per token; excluded positions (special tokens, attention sinks) are zeroed first.
The pairs feed the statistics, then are grouped per (feature, window) to give each
window's maximum, which decides entry into the top-k and the quantile reservoir; only
groups that enter get their per-token activations materialised, and only their nonzero
entries are kept (:mod:`topk_examples`).

The state lives beside the model (on its GPU) when it fits there comfortably, and in
host memory otherwise (:func:`state_device`): then only each batch's sparse pairs cross
over, never the dense activations.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import torch

from featurelens.core.dictionaries.base import Dictionary, SparseActs
from featurelens.core.extraction.accumulators import N_BINS, FeatureStats
from featurelens.core.extraction.quantile_sampling import reservoir_score
from featurelens.core.extraction.random_examples import RandomPool
from featurelens.core.extraction.topk_examples import BestWindows

#: Rows encoded at once; bounds the dense [rows, d_sae] a dense-encoding dictionary makes.
ENCODE_CHUNK = 4096
#: Kept activations assumed per window slot when sizing the state (a feature fires on a
#: few tokens of a window it was kept for; the pool holds 16 bytes per activation).
ENTRIES_PER_SLOT = 4
#: Of the accelerator's free memory, the share the state may take beside the model's work.
DEVICE_SHARE = 0.5


@dataclass
class Settings:
    """The options that shape the accumulated state."""

    top_k: int = 50
    n_quantile: int = 50
    quantile_bins: int = 10
    n_random: int = 50
    random_pool: int = 400
    seed: int = 0


def encode(dictionary: Dictionary, acts: torch.Tensor) -> list[SparseActs]:
    """Sparse codes of ``acts [B, T, d]``, ``ENCODE_CHUNK`` rows at a time."""
    rows = acts.reshape(-1, acts.shape[-1])
    return [dictionary.encode_sparse(rows[start:start + ENCODE_CHUNK])
            for start in range(0, rows.shape[0], ENCODE_CHUNK)]


def state_bytes(n_features: int, settings: Settings) -> int:
    """About how many bytes an :class:`ExtractionState` of ``n_features`` holds: statistics
    (the int32 histogram dominates), 8 bytes a window slot, and the kept activations at
    ``ENTRIES_PER_SLOT`` entries a slot. Independent of the context length."""
    slots = n_features * (settings.top_k + settings.n_quantile)
    return n_features * (N_BINS * 4 + 24 + 4 * 2) + slots * (8 + 16 * ENTRIES_PER_SLOT)


def state_device(n_features: int, settings: Settings, device: torch.device) -> torch.device:
    """Where the state goes: ``device`` unless it is an accelerator whose free memory the
    state would take more than ``DEVICE_SHARE`` of; then host memory."""
    device = torch.device(device)
    if device.type != "cuda":
        return device
    free, _ = torch.cuda.mem_get_info(device)
    return device if state_bytes(n_features, settings) <= DEVICE_SHARE * free else torch.device("cpu")


def encode_set(dictionary: Any, acts: dict[str, torch.Tensor]) -> list[SparseActs]:
    """A transcoder set's codes of ``{hookpoint: [B, T, d]}`` (every layer, global feature
    indices), ``ENCODE_CHUNK`` token rows at a time."""
    rows = {name: a.reshape(-1, a.shape[-1]) for name, a in acts.items()}
    n = next(iter(rows.values())).shape[0]
    return [dictionary.encode_sparse_layers({name: r[start:start + ENCODE_CHUNK] for name, r in rows.items()})
            for start in range(0, n, ENCODE_CHUNK)]


@contextmanager
def _one_cpu_thread(device: torch.device) -> Iterator[None]:
    """Run the bookkeeping single-threaded on CPU.

    Its ops are many and small; with several intra-op threads each one pays a thread
    hand-off that costs more than the work (measured 8x slower with 2 threads on a busy
    2-core machine). The forward pass and the encode keep all threads.
    """
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class ExtractionState:
    """Statistics, top windows, quantile reservoir and random pool for one dictionary."""

    def __init__(self, n_features: int, context: int, settings: Settings, device: torch.device):
        self.settings = settings
        self.context = context
        self.device = torch.device(device)
        self.stats = FeatureStats.empty(n_features, device)
        self.top = BestWindows(n_features, settings.top_k, context, device)
        self.reservoir = BestWindows(n_features, settings.n_quantile, context, device)
        self.pool = RandomPool(settings.random_pool, settings.seed)

    def update(self, dictionary: Dictionary, acts: torch.Tensor, seq_ids: torch.Tensor,
               excluded: torch.Tensor) -> None:
        """Fold one batch in: ``acts [B, T, d]``, window ids ``[B]``, ``excluded [B, T]``."""
        self.accumulate(encode(dictionary, acts), acts.shape[0], acts.shape[1], seq_ids, excluded)

    def accumulate(self, codes: list[SparseActs], batch: int, context: int, seq_ids: torch.Tensor,
                   excluded: torch.Tensor) -> None:
        """Fold in a batch already encoded by :func:`encode` (the part that is not the model)."""
        with _one_cpu_thread(self.device):
            self._accumulate(codes, batch, context, seq_ids, excluded)

    def _accumulate(self, codes: list[SparseActs], batch: int, context: int, seq_ids: torch.Tensor,
                    excluded: torch.Tensor) -> None:
        keep = (~excluded).reshape(-1)
        features_parts, values_parts, token_parts = [], [], []
        for chunk, code in enumerate(codes):
            start = chunk * ENCODE_CHUNK
            values = code.values.float() * keep[start:start + ENCODE_CHUNK, None]
            token, slot = torch.nonzero(values > 0, as_tuple=True)
            features_parts.append(code.indices[token, slot].long())
            values_parts.append(values[token, slot])
            token_parts.append(token + start)
        # the sparse pairs move to the state (host memory when the state did not fit the GPU)
        features = torch.cat(features_parts).to(self.device)
        values = torch.cat(values_parts).to(self.device)
        tokens = torch.cat(token_parts).to(self.device)
        seq_ids = seq_ids.to(self.device)
        self.stats.update(features, values, int(keep.sum()))
        window, position = tokens // context, tokens % context
        group_key = features * batch + window
        groups, inverse = torch.unique(group_key, return_inverse=True)
        g_feature, g_window = groups // batch, groups % batch
        g_max = torch.zeros(groups.numel(), device=values.device).scatter_reduce_(
            0, inverse, values, reduce="amax", include_self=False)
        g_seq = seq_ids.to(values.device)[g_window]
        into_top = g_max > self.top.threshold(g_feature)
        r_score = reservoir_score(g_seq, g_feature, self.settings.seed)
        into_res = r_score > self.reservoir.threshold(g_feature)
        # each structure takes its entering windows' activations straight from the batch's
        # (feature, token) pairs: no dense [windows, context] row is built
        for best, into, score in ((self.top, into_top, g_max), (self.reservoir, into_res, r_score)):
            chosen = torch.nonzero(into).flatten()
            if chosen.numel() == 0:
                continue
            # groups come out of torch.unique sorted by feature, as enter() requires
            cand, slot_id = best.enter(g_feature[chosen], g_seq[chosen], score[chosen])
            slot_of = torch.full((groups.numel(),), -1, dtype=torch.long, device=values.device)
            slot_of[chosen[cand]] = slot_id
            pair_slot = slot_of[inverse]
            hit = torch.nonzero(pair_slot >= 0).flatten()
            best.add(pair_slot[hit] * context + position[hit], seq_ids[window[hit]], values[hit])
        self.pool.offer(seq_ids, g_feature, g_window)

    def nbytes(self) -> int:
        """Bytes held by the state's tensors (what a test or a budget inspects)."""
        stats = sum(t.numel() * t.element_size() for t in (self.stats.fire_count, self.stats.total,
                                                           self.stats.max, self.stats.min, self.stats.hist))
        pool = sum(t.numel() * t.element_size() for t in (self.pool.seq, self.pool.key, *self.pool.firing))
        return stats + self.top.nbytes() + self.reservoir.nbytes() + pool

    def state_dict(self) -> dict[str, Any]:
        return {"stats": self.stats.state(), "top": self.top.state(),
                "reservoir": self.reservoir.state(), "pool": self.pool.state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stats = FeatureStats.from_state(state["stats"])
        self.top.load(state["top"])
        self.reservoir.load(state["reservoir"])
        self.pool.load(state["pool"])
