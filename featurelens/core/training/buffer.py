"""A shuffle buffer: activations of consecutive tokens are highly correlated, so
training batches are drawn at random from a pool of many windows' worth of rows
instead of in corpus order; the pool is refilled as it drains. Nothing needs the
whole activation set in memory."""

from __future__ import annotations

import torch


class ShuffleBuffer:
    """Up to ``capacity`` rows; :meth:`take` removes a random batch of them."""

    def __init__(self, capacity: int, width: int, *, seed: int = 0, device: torch.device | str = "cpu"):
        self.capacity = int(capacity)
        self.rows = torch.empty(0, width, device=device)
        self.generator = torch.Generator(device="cpu").manual_seed(seed)

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    def needs_refill(self) -> bool:
        """Refill at half capacity so every batch mixes old and new windows."""
        return len(self) < self.capacity // 2 or len(self) == 0

    def add(self, chunk: torch.Tensor) -> None:
        self.rows = torch.cat([self.rows, chunk.to(self.rows.device, self.rows.dtype)])

    def take(self, n: int) -> torch.Tensor:
        """``n`` rows drawn uniformly without replacement (fewer if fewer are left)."""
        order = torch.randperm(len(self), generator=self.generator).to(self.rows.device)
        batch = self.rows[order[:n]]
        self.rows = self.rows[order[n:]]
        return batch

    def state(self) -> dict[str, torch.Tensor]:
        return {"rows": self.rows.cpu(), "generator": self.generator.get_state()}

    def load(self, state: dict[str, torch.Tensor]) -> None:
        self.rows = state["rows"].to(self.rows.device, self.rows.dtype)
        self.generator.set_state(state["generator"])
