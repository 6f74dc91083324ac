"""Training checkpoints: one checkpoint, replaced atomically, read without pickle.

The checkpoint holds the dictionary's and optimizer's state, the position in the
activation stream, the shuffle buffer's rows and random state, and the dead-feature
counters: everything needed so that a run killed at any moment (even ``kill -9``)
and started again produces the same dictionary as an uninterrupted run. It is
``state.json`` (numbers, settings, tensor references) and the safetensors file it names,
written by :mod:`featurelens.core.safe_checkpoint`: the manifest's rename replaces the
previous checkpoint in one step. A pickled ``state.pt`` an earlier version wrote is
refused without being opened.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from featurelens.core import safe_checkpoint
from featurelens.core.errors import FeaturelensError

NAME = "state"
FILE = f"{NAME}.json"
#: What earlier featurelens versions wrote (torch's pickle format): refused, never read.
PICKLED = "state.pt"


def save(folder: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` as the folder's checkpoint (replacing the previous one atomically)."""
    return safe_checkpoint.save(folder, NAME, state)


def load(folder: Path, template: Any = None) -> dict[str, Any] | None:
    """The saved state, or ``None`` if there is none. ``template`` (tensors of the shapes
    this run holds) is checked against the file before any tensor is allocated."""
    if (folder / PICKLED).exists() and not (folder / FILE).exists():
        raise FeaturelensError(
            f"The training checkpoint {folder / PICKLED} is in torch's pickle format, which featurelens no "
            "longer reads (unpickling can run code); delete it and rerun the same command to restart "
            "this training run."
        )
    if not (folder / FILE).is_file():
        return None
    try:
        return safe_checkpoint.load(folder, NAME, device="cpu", template=template)
    except (safe_checkpoint.Invalid, OSError) as error:
        raise FeaturelensError(
            f"The training checkpoint {folder / FILE} cannot be read ({error}); delete the folder "
            f"{folder} to start this training run over."
        ) from None


def remove(folder: Path) -> None:
    """Drop the checkpoint once the final dictionary is saved."""
    safe_checkpoint.remove(folder, NAME)
    (folder / PICKLED).unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:
        pass
