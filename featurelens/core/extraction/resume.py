"""Run ids and accumulator checkpoints: how an interrupted extraction resumes exactly.

The accumulator state (tensors, possibly hundreds of MB) lives in a checkpoint file
next to the store, written to a temporary name and renamed, so a file under its final
name is always complete. The store's ``runs.progress`` names the checkpoint and the
number of batches it covers, and is updated in the same transaction that writes that
shard's sequences. So after a kill at any moment, the store and the newest checkpoint
it names agree; later checkpoint files the store never acknowledged are ignored.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from featurelens.core.errors import FeaturelensError

#: The only names a checkpoint can have: what :func:`save_checkpoint` writes.
CHECKPOINT_NAME = re.compile(r"state-\d{9}\.pt")


def run_id(config: dict[str, Any]) -> str:
    """Stable id of an extraction: the same configuration resumes the same run."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()
    return f"extract-{digest[:16]}"


def checkpoint_dir(store_path: Path, run: str) -> Path:
    """Where the run's checkpoint files live: beside the store, one folder per run."""
    return store_path.parent / f".{store_path.name}.extract" / run


def save_checkpoint(folder: Path, batches_done: int, state: dict[str, Any]) -> str:
    """Write ``state`` atomically; return the file name to record in the store."""
    folder.mkdir(parents=True, exist_ok=True)
    name = f"state-{batches_done:09d}.pt"
    tmp = folder / f".{name}.tmp"
    with open(tmp, "wb") as handle:
        torch.save(state, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, folder / name)
    return name


def load_checkpoint(folder: Path, name: str, device: torch.device) -> dict[str, Any] | None:
    """The state in ``name``, or None if the file is gone (the run then starts over).

    ``name`` comes from the store, which anyone can edit: it must be a plain checkpoint
    file name (no folder, no absolute path), and the file is read with
    ``weights_only=True``, so tensors and plain containers load and code never runs.
    """
    if not isinstance(name, str) or not CHECKPOINT_NAME.fullmatch(name):
        raise FeaturelensError(
            f"The store's progress for this extraction names the checkpoint {str(name)[:80]!r}, which "
            "is not a featurelens checkpoint file name (state-NNNNNNNNN.pt in the run folder); "
            "the runs table was edited by hand: delete that runs row to start the extraction over."
        )
    path = folder / name
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises many types for a foreign file
        first = (str(error).strip().splitlines() or ["unreadable"])[0][:160]
        raise FeaturelensError(
            f"The extraction checkpoint {path} holds something other than tensors ({first}); "
            "delete it and rerun to start the extraction over."
        ) from None


def prune_checkpoints(folder: Path, keep: str) -> None:
    """Delete every checkpoint in ``folder`` except ``keep`` (called after the store commits)."""
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        if path.name != keep:
            path.unlink(missing_ok=True)


def remove_checkpoints(folder: Path) -> None:
    """Delete the run's checkpoint folder (and its parent if it is left empty)."""
    shutil.rmtree(folder, ignore_errors=True)
    try:
        folder.parent.rmdir()
    except OSError:
        pass


def restore(db: Any, folder: Path, progress_json: str | None, state: Any, corpus_id: str,
            device: torch.device) -> tuple[int, int]:
    """Load a run's last checkpoint into ``state``; returns (batches done, first sequence id).

    Both executors resume the same way: from the checkpoint named in the run's progress
    JSON, or, for a new run, after the corpus's last stored sequence."""
    progress = json.loads(progress_json) if progress_json else None
    if not progress:
        existing = db.execute("SELECT max(sequence_id) FROM sequences WHERE corpus_id = ?", [corpus_id])
        return 0, (existing[0][0] + 1) if existing and existing[0][0] is not None else 0
    done_batches = 0
    saved = load_checkpoint(folder, progress["checkpoint"], device)
    if saved is not None:
        state.load_state_dict(saved)
        done_batches = int(progress["batches_done"])
    return done_batches, int(progress["seq_floor"])
