"""Per feature, the K windows with the highest score, with their activations kept sparsely.

Used twice: with score = the window's maximum activation it holds the top examples;
with score = a per-(window, feature) hash it is a uniform reservoir sample for quantile
examples (see :mod:`quantile_sampling`). The per-slot state is ``[d_sae, K]`` scores
(float32) and window ids (int32): 8 bytes a slot, whatever the context length.

A kept window's per-token activations are stored as its nonzero entries only, in one
flat pool of ``(slot * context + position, window id, value)`` entries: a feature fires
on a few tokens of a window, so the pool holds what is kept, not ``K x context`` floats
per feature (58 KB a feature at K = 50, context 128, for both structures: 60 GB at a
million features). An entry is live while its slot still holds its window; evicted
windows leave dead entries, dropped when the pool has doubled since it was last
compacted (amortised linear). The examples' token activations still never need a
second pass over the corpus: they are exactly the values the stream saw.

Slots are unordered, except that a feature's held windows fill its first slots
(``filled`` counts them). A feature with room for all of a batch's candidates takes them
into its next empty slots, with no ranking; only a feature with more candidates than
empty slots ranks old and new together (a small top-k over its slots), each entering
candidate taking the slot of the window it evicts. A batch therefore costs work in
proportion to its candidates (plus ``K`` per overflowing feature), never to the width,
plus appending the nonzero activations of each entering window; nothing else moves.
Order is imposed once, at the end (:meth:`ranked`).
"""

from __future__ import annotations

import math

import torch

#: Pool entries below which no compaction is attempted (compacting tiny pools is waste).
COMPACT_FLOOR = 1 << 16


def rank_key(score: torch.Tensor, seq: torch.Tensor) -> torch.Tensor:
    """int64 keys ordered like (float32 score ascending, window id descending).

    The float's bits, made monotone for negatives (empty slots, padding), fill the high
    32 bits; the low 31 hold ``2**31 - 1 - seq``, so of two equal scores the later
    window is the lower key. Window ids must be below 2**31.
    """
    bits = score.float().contiguous().view(torch.int32).long()
    bits = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)
    return bits * (1 << 32) + ((1 << 31) - 1 - seq.long().clamp_min(0))


def dense_rows(index: torch.Tensor, value: torch.Tensor, n: int, context: int,
               device: torch.device) -> torch.Tensor:
    """``[n, context]`` float32 rows from flat ``row * context + position`` entries."""
    rows = torch.zeros(n * context, device=device)
    rows[index.to(device)] = value.to(device, torch.float32)
    return rows.view(n, context)


class BestWindows:
    """Top-``k`` windows per feature by a score, with their nonzero per-token activations."""

    #: Score of an empty slot. Real scores are positive (an activation, or 1 - a hash in
    #: [0, 1)), and padding is -inf, so empty < real and padding never displaces anything.
    EMPTY = -1.0

    def __init__(self, n_features: int, k: int, context: int, device: torch.device):
        self.k = k
        self.context = context
        self.score = torch.full((n_features, k), self.EMPTY, device=device)
        self.seq = torch.full((n_features, k), -1, dtype=torch.int32, device=device)
        self.low = torch.full((n_features,), self.EMPTY, device=device)
        #: windows held per feature; they sit in slots ``0..filled-1``, the rest are empty
        self.filled = torch.zeros(n_features, dtype=torch.int32, device=device)
        # the pool: entry i is (slot * context + position, window id, activation)
        self.entry_index = torch.empty(0, dtype=torch.long, device=device)
        self.entry_seq = torch.empty(0, dtype=torch.int32, device=device)
        self.entry_value = torch.empty(0, dtype=torch.float32, device=device)
        self._pending: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  #: appended, not joined yet
        self._pending_size = 0
        self._compacted = 0  #: pool size after the last compaction
        self._sorted = True  #: the pool is compacted and ordered by entry index

    @property
    def n_features(self) -> int:
        return self.score.shape[0]

    def nbytes(self) -> int:
        """Bytes held by the state's tensors (slots and pool)."""
        tensors = [self.score, self.seq, self.low, self.filled, self.entry_index, self.entry_seq, self.entry_value]
        tensors += [t for piece in self._pending for t in piece]
        return sum(t.numel() * t.element_size() for t in tensors)

    def threshold(self, features: torch.Tensor) -> torch.Tensor:
        """The score a candidate of each feature must beat to enter (the lowest kept)."""
        if self.k == 0:
            return torch.full(features.shape, math.inf, device=self.low.device)
        return self.low[features]

    def offer(self, features: torch.Tensor, seqs: torch.Tensor, scores: torch.Tensor,
              rows: torch.Tensor, table: torch.Tensor) -> None:
        """Merge candidates into the state.

        Candidates are one per (feature, window), sorted by feature, already above
        :meth:`threshold`; candidate ``i``'s per-token activations are ``table[rows[i]]``
        (a dense ``[*, context]`` table, read only for the candidates that enter).
        """
        cand, slot_id = self.enter(features, seqs, scores)
        if cand.numel() == 0:
            return
        entering = table[rows[cand]]
        hit_row, position = torch.nonzero(entering, as_tuple=True)
        self.add(slot_id[hit_row] * self.context + position, seqs[cand][hit_row], entering[hit_row, position])

    def enter(self, features: torch.Tensor, seqs: torch.Tensor,
              scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Put the candidates that make their feature's top ``k`` into slots (candidates as
        for :meth:`offer`); their activations are the caller's to add (:meth:`add`).

        :return: ``(cand, slot_id)``: the entering candidates' indices and their flat slots
            ``feature * k + slot``.

        A feature whose empty slots can take all its candidates takes them in order, no
        ranking: its filled slots are always ``0..filled-1``, so this costs O(candidates),
        whatever the width. Only features that overflow rank old and new together.
        """
        empty = torch.empty(0, dtype=torch.long, device=features.device)
        if features.numel() == 0 or self.k == 0:
            return empty, empty
        k, device = self.k, features.device
        scores, seqs = scores.float(), seqs.long()
        touched, counts = torch.unique_consecutive(features, return_counts=True)
        filled = self.filled[touched]
        fits = counts <= k - filled
        cand_fits = torch.repeat_interleave(fits, counts)
        quick = torch.nonzero(cand_fits).flatten()
        starts = torch.cumsum(counts, 0) - counts
        rank = torch.arange(features.numel(), device=device) - torch.repeat_interleave(starts, counts)
        quick_slot = torch.repeat_interleave(filled.long(), counts)[quick] + rank[quick]
        quick_id = features[quick] * k + quick_slot
        self.score.view(-1)[quick_id] = scores[quick]
        self.seq.view(-1)[quick_id] = seqs[quick].to(torch.int32)
        grown = touched[fits]
        self.filled[grown] += counts[fits].to(self.filled.dtype)
        full = grown[self.filled[grown] == k]
        if full.numel():
            self.low[full] = self.score[full].min(dim=1).values
        cand, slot_id = [quick], [quick_id]
        if not bool(fits.all()):
            rest = torch.nonzero(~cand_fits).flatten()
            ranked, ranked_slot = self._rank_in(features[rest], seqs[rest], scores[rest])
            cand.append(rest[ranked])
            slot_id.append(ranked_slot)
        return torch.cat(cand), torch.cat(slot_id)

    def _rank_in(self, features: torch.Tensor, seqs: torch.Tensor,
                 scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`enter` for features whose candidates outnumber their empty slots: keep
        the ``k`` best of old and new; return the entering candidates and their flat slots."""
        device = features.device
        touched, counts = torch.unique_consecutive(features, return_counts=True)
        n, k, width = touched.numel(), self.k, int(counts.max())
        starts = torch.cumsum(counts, 0) - counts
        row = torch.repeat_interleave(torch.arange(n, device=device), counts)
        at = row * width + torch.arange(features.numel(), device=device) - starts[row]  # in [n, width]
        # padding ranks below everything, so it is evicted first
        cand_key = torch.full((n * width,), torch.iinfo(torch.long).min, dtype=torch.long, device=device)
        cand_key[at] = rank_key(scores, seqs)
        cand_index = torch.full((n * width,), -1, dtype=torch.long, device=device)
        cand_index[at] = torch.arange(features.numel(), device=device)
        # evict the `width` lowest of old + new (a small top-k: much cheaper than keeping k);
        # equal scores evict the later window, so which windows are kept never depends on
        # batching, resuming or the order shards are merged in. Empty slots rank below every
        # candidate, so a feature with more candidates than empty slots ends full.
        keys = torch.cat([rank_key(self.score[touched], self.seq[touched]), cand_key.view(n, width)], dim=1)
        lowest = keys.topk(width, dim=1, largest=False, sorted=False).indices
        chosen = torch.ones((n, k + width), dtype=torch.bool, device=device)
        chosen.scatter_(1, lowest, False)
        evicted_row, evicted_slot = torch.nonzero(~chosen[:, :k], as_tuple=True)
        entering = torch.nonzero(chosen[:, k:].reshape(-1)).flatten()
        # both lists are row-major and each row evicts as many as enter: pair them in order
        source = cand_index[entering]
        slot_id = touched[evicted_row] * k + evicted_slot
        self.score.view(-1)[slot_id] = scores[source]
        self.seq.view(-1)[slot_id] = seqs[source].to(torch.int32)
        self.filled[touched] = k
        self.low[touched] = self.score[touched].min(dim=1).values
        return source, slot_id

    def place(self, feature: torch.Tensor, slot: torch.Tensor, seq: torch.Tensor, score: torch.Tensor,
              acts_index: torch.Tensor, acts_value: torch.Tensor) -> None:
        """Put windows straight into slots (no ranking): window ``i`` goes to
        ``(feature[i], slot[i])``; its activations are the entries ``acts_index`` (flat
        ``i * context + position``) and ``acts_value``. The caller keeps ``low`` right."""
        device = self.score.device
        feature, slot = feature.to(device), slot.to(device)
        self.score[feature, slot] = score.to(device, torch.float32)
        self.seq[feature, slot] = seq.to(device, torch.int32)
        acts_index = acts_index.to(device)
        row, position = acts_index // self.context, acts_index % self.context
        slot_id = feature[row] * self.k + slot[row]
        self.add(slot_id * self.context + position, seq.to(device)[row], acts_value.to(device))
        self._pack(torch.unique(feature))

    def _pack(self, features: torch.Tensor | None = None) -> None:
        """Recount ``filled`` for ``features`` (default: all) and move their held windows
        to the first slots (stable), so :meth:`enter` can fill the next ones in order."""
        features = torch.arange(self.n_features, device=self.score.device) if features is None else features
        if features.numel() == 0 or self.k == 0:
            return
        held = self.seq[features] >= 0
        filled = held.sum(dim=1, dtype=torch.int32)
        self.filled[features] = filled
        packed = held == (torch.arange(self.k, device=held.device) < filled[:, None])
        rows = torch.nonzero(~packed.all(dim=1)).flatten()
        if rows.numel() == 0:
            return
        features, held = features[rows], held[rows]
        self.compact()  # liveness is judged against the slots as they are, before they move
        order = torch.argsort((~held).to(torch.int8), dim=1, stable=True)  # new slot j <- old slot order[j]
        self.score[features] = self.score[features].gather(1, order)
        self.seq[features] = self.seq[features].gather(1, order)
        # then every live entry (now all in one tensor) follows its window to its new slot
        inverse = torch.argsort(order, dim=1)  # old slot s -> new slot inverse[s]
        row_of = torch.full((self.n_features,), -1, dtype=torch.long, device=order.device)
        row_of[features] = torch.arange(features.numel(), device=order.device)
        slot_id, position = self.entry_index // self.context, self.entry_index % self.context
        feature, slot = slot_id // self.k, slot_id % self.k
        row = row_of[feature]
        moved = torch.nonzero(row >= 0).flatten()
        new_slot = slot.clone()
        new_slot[moved] = inverse[row[moved], slot[moved]]
        self.entry_index = (feature * self.k + new_slot) * self.context + position
        self._sorted = False

    def add(self, index: torch.Tensor, seq: torch.Tensor, value: torch.Tensor) -> None:
        """Add activations of windows just put into slots: entry ``slot_id * context +
        position``, the window's id, the value (nonzero)."""
        if index.numel() == 0:
            return
        # appended pieces are joined only when the pool compacts: no copy of the pool per batch
        self._pending.append((index.long(), seq.to(torch.int32), value.float()))
        self._pending_size += index.numel()
        self._sorted = False
        if self.entry_index.numel() + self._pending_size >= max(COMPACT_FLOOR, 2 * self._compacted):
            self.compact()

    def compact(self) -> None:
        """Join appended entries and drop those of evicted windows."""
        if self._pending:
            self.entry_index = torch.cat([self.entry_index] + [piece[0] for piece in self._pending])
            self.entry_seq = torch.cat([self.entry_seq] + [piece[1] for piece in self._pending])
            self.entry_value = torch.cat([self.entry_value] + [piece[2] for piece in self._pending])
            self._pending, self._pending_size = [], 0
        live = self.seq.view(-1)[self.entry_index // self.context] == self.entry_seq
        if not bool(live.all()):
            self.entry_index, self.entry_seq, self.entry_value = (
                self.entry_index[live], self.entry_seq[live], self.entry_value[live])
        self._compacted = self.entry_index.numel()

    def _ordered(self) -> None:
        """Compact the pool and order it by slot, so a range of features is one slice."""
        if self._sorted:
            return
        self.compact()
        order = torch.argsort(self.entry_index, stable=True)
        self.entry_index, self.entry_seq, self.entry_value = (
            self.entry_index[order], self.entry_seq[order], self.entry_value[order])
        self._sorted = True

    def entries(self, feature: torch.Tensor, slot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The activations of windows at ``(feature[i], slot[i])`` as flat entries:
        ``(i * context + position, value)``, ordered by that index."""
        self._ordered()
        device = self.score.device
        wanted = feature.to(device).long() * self.k + slot.to(device).long()
        by_slot = torch.argsort(wanted)
        ordered = wanted[by_slot]
        entry_slot = self.entry_index // self.context
        at = torch.searchsorted(ordered, entry_slot).clamp_max(max(ordered.numel() - 1, 0))
        found = (ordered[at] == entry_slot) if ordered.numel() else torch.zeros_like(entry_slot, dtype=torch.bool)
        row = by_slot[at[found]]
        index = row * self.context + self.entry_index[found] % self.context
        order = torch.argsort(index)
        return index[order], self.entry_value[found][order]

    def gather(self, feature: torch.Tensor, slot: torch.Tensor) -> torch.Tensor:
        """Dense ``[n, context]`` activations of the windows at ``(feature[i], slot[i])``."""
        index, value = self.entries(feature, slot)
        return dense_rows(index, value, feature.numel(), self.context, self.score.device)

    def acts_of(self, first: int, last: int) -> torch.Tensor:
        """Dense ``[last - first, K, context]`` activations of features ``first..last-1`` (CPU)."""
        self._ordered()
        lo, hi = first * self.k * self.context, last * self.k * self.context
        start, end = (int(i) for i in torch.searchsorted(
            self.entry_index, torch.tensor([lo, hi], device=self.entry_index.device)))
        acts = dense_rows(self.entry_index[start:end].cpu() - lo, self.entry_value[start:end].cpu(),
                          (last - first) * self.k, self.context, torch.device("cpu"))
        return acts.view(last - first, self.k, self.context)

    def ranked(self, first: int, last: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(seq, acts, order)`` of features ``first..last-1`` on the CPU; ``order`` sorts
        each feature's slots by descending score, empty slots last, equal scores by window
        id (so the order never depends on which slot a window happened to land in)."""
        seq = self.seq[first:last].long()
        by_seq = torch.argsort(seq, dim=1, stable=True)
        by_score = torch.argsort(self.score[first:last].gather(1, by_seq), dim=1, descending=True, stable=True)
        order = by_seq.gather(1, by_score)
        return seq.cpu(), self.acts_of(first, last), order.cpu()

    def ranked_live(self, first: int, last: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`ranked` for only those features of ``first..last-1`` that hold at least one
        window, as ``(features, seq, acts, order)`` on the CPU (``features``: their indices,
        ascending). A feature without windows gives no examples, and in a wide dictionary
        most never fire, so their rows are never built."""
        seq_all = self.seq[first:last]
        live = torch.nonzero((seq_all >= 0).any(dim=1)).flatten()
        seq = seq_all[live].long()
        by_seq = torch.argsort(seq, dim=1, stable=True)
        by_score = torch.argsort(self.score[first:last][live].gather(1, by_seq), dim=1, descending=True,
                                 stable=True)
        order = by_seq.gather(1, by_score)
        return (live + first).cpu(), seq.cpu(), self._acts_at(first, last, live), order.cpu()

    def _acts_at(self, first: int, last: int, live: torch.Tensor) -> torch.Tensor:
        """Dense ``[len(live), K, context]`` activations of features ``first + live`` (CPU)."""
        self._ordered()
        per_feature = self.k * self.context
        lo, hi = first * per_feature, last * per_feature
        start, end = (int(i) for i in torch.searchsorted(
            self.entry_index, torch.tensor([lo, hi], device=self.entry_index.device)))
        index = self.entry_index[start:end].cpu() - lo
        row_of = torch.full((last - first,), -1, dtype=torch.long)
        row_of[live.cpu()] = torch.arange(live.numel())
        row = row_of[index // per_feature]
        kept = row >= 0
        index = row[kept] * per_feature + index[kept] % per_feature
        acts = dense_rows(index, self.entry_value[start:end].cpu()[kept], live.numel() * self.k, self.context,
                          torch.device("cpu"))
        return acts.view(live.numel(), self.k, self.context)

    def state(self) -> dict[str, torch.Tensor]:
        self.compact()
        return {"score": self.score, "seq": self.seq, "low": self.low, "entry_index": self.entry_index,
                "entry_seq": self.entry_seq, "entry_value": self.entry_value}

    def load(self, state: dict[str, torch.Tensor]) -> None:
        device = self.score.device
        self.score, self.low = state["score"].to(device), state["low"].to(device)
        self.seq = state["seq"].to(device, torch.int32)
        self.entry_index = state["entry_index"].to(device)
        self.entry_seq = state["entry_seq"].to(device, torch.int32)
        self.entry_value = state["entry_value"].to(device)
        self._pending, self._pending_size = [], 0
        self._compacted = self.entry_index.numel()
        self._sorted = False
        self._pack()
