"""Training checkpoints: one file, replaced atomically, loaded safely.

The file holds the dictionary's and optimizer's state, the position in the
activation stream, the shuffle buffer's rows and random state, and the dead-feature
counters: everything needed so that a run killed at any moment (even ``kill -9``)
and started again produces the same dictionary as an uninterrupted run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from featurelens.core.errors import FeaturelensError

FILE = "state.pt"


def save(folder: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``folder/state.pt`` via a temporary file and one rename."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / FILE
    tmp = folder / f".{FILE}.{os.getpid()}.tmp"
    with open(tmp, "wb") as handle:
        torch.save(state, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, target)
    return target


def load(folder: Path) -> dict[str, Any] | None:
    """The saved state, or ``None`` if there is none (``weights_only``: never runs code)."""
    target = folder / FILE
    if not target.is_file():
        return None
    try:
        return torch.load(target, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any corruption gets the same advice
        raise FeaturelensError(
            f"The training checkpoint {target} cannot be read ({type(error).__name__}); delete "
            "it to start this training run over."
        ) from None


def remove(folder: Path) -> None:
    """Drop the checkpoint once the final dictionary is saved."""
    for path in (folder / FILE,):
        if path.exists():
            path.unlink()
    for stale in folder.glob(f".{FILE}.*.tmp"):
        stale.unlink()
    try:
        folder.rmdir()
    except OSError:
        pass
