"""A worker's extraction state, carried across the shards it is given.

A fresh state per shard cost a Ray worker three things per shard: zeroing a dense
``[d_sae, K, context]`` state (~240 MB at 9216 latents), materialising every window
of the shard (an empty state admits them all), and sending them all back. Carrying
one state keeps its top-k and reservoir thresholds as warm as the in-process loop's, so
the worker does per batch exactly what the in-process loop does.

:meth:`CarriedState.ship` sends what accumulated since the last partial and keeps the
windows: statistics and the random pool start again (they add up in the driver's merge);
the top windows and the reservoir stay, and only their slots filled since the last
partial travel. The driver's merge keeps the K best of every window offered, and every
window a worker ever held is offered once, so the merged state is the same as one pass:
the K best over all windows are each among the K best of their own worker's windows.

Within one carried state windows must arrive in window order (the in-state rule keeps
the earlier of two equal scores by rejecting the later one); the driver sends a worker
its shards in order and reduces a shard it must redo in a state of its own.
"""

from __future__ import annotations

import torch

from featurelens.core.extraction.accumulators import FeatureStats
from featurelens.core.extraction.random_examples import RandomPool
from featurelens.core.extraction.state import ExtractionState, Settings
from featurelens.scale.partial import to_bytes


class CarriedState:
    """One extraction state that outlives shards, and what of it was already sent."""

    def __init__(self, n_features: int, context: int, settings: Settings, device: torch.device):
        self.state = ExtractionState(n_features, context, settings, device)
        self._sent = self._windows()

    def _windows(self) -> dict[str, torch.Tensor]:
        return {"top": self.state.top.seq.clone(), "reservoir": self.state.reservoir.seq.clone()}

    def ship(self) -> bytes:
        """The partial of everything since the last call (a valid partial when empty)."""
        state = self.state
        data = to_bytes(state, since=self._sent)
        self._sent = self._windows()
        state.stats = FeatureStats.empty(state.stats.fire_count.numel(), state.stats.fire_count.device)
        state.pool = RandomPool(state.pool.size, state.pool.seed)
        return data
