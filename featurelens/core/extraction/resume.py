"""Run ids and accumulator checkpoints: how an interrupted extraction resumes exactly.

The accumulator state (tensors, possibly hundreds of MB) lives in a checkpoint next to
the store: ``state-NNNNNNNNN.json`` (counters and references) and the safetensors file it
names, written by :mod:`featurelens.core.safe_checkpoint` (each file to a temporary name,
fsynced and renamed, the manifest last), so a checkpoint under its final name is always
complete and nothing in it is pickled. The store's ``runs.progress`` names the checkpoint
and the number of batches it covers, and is updated in the same transaction that writes
that shard's sequences. So after a kill at any moment, the store and the newest
checkpoint it names agree; later checkpoints the store never acknowledged are ignored.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from featurelens.core import safe_checkpoint
from featurelens.core.errors import FeaturelensError

#: The only names a checkpoint can have: what :func:`save_checkpoint` writes (its manifest).
CHECKPOINT_NAME = re.compile(r"state-\d{9}\.json")
#: What earlier featurelens versions wrote: torch's pickle format, never opened.
PICKLED_NAME = re.compile(r"state-\d{9}\.pt")


def run_id(config: dict[str, Any]) -> str:
    """Stable id of an extraction: the same configuration resumes the same run."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()
    return f"extract-{digest[:16]}"


def checkpoint_dir(store_path: Path, run: str) -> Path:
    """Where the run's checkpoint files live: beside the store, one folder per run."""
    return store_path.parent / f".{store_path.name}.extract" / run


def save_checkpoint(folder: Path, batches_done: int, state: dict[str, Any]) -> str:
    """Write ``state`` atomically; return the manifest's file name to record in the store."""
    manifest = safe_checkpoint.save(folder, f"state-{batches_done:09d}", state)
    return manifest.name


def load_checkpoint(folder: Path, name: str, device: torch.device,
                    template: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The state in ``name``, or None if it is gone (the run then starts over).

    ``name`` comes from the store, which anyone can edit: it must be a plain checkpoint
    manifest name (no folder, no absolute path). Only JSON and safetensors are read, so
    nothing in the folder can run code; ``template`` (a fresh state's tensors) fixes the
    shapes and dtypes the file must declare before any tensor is allocated. A pickled
    ``state-NNNNNNNNN.pt`` that an earlier version wrote is refused without being opened.
    """
    if isinstance(name, str) and PICKLED_NAME.fullmatch(name):
        if not (folder / name).exists():
            return None
        raise FeaturelensError(
            f"The store's progress for this extraction names the checkpoint {folder / name}, in torch's "
            "pickle format, which featurelens no longer reads (unpickling can run code); delete the folder "
            f"{folder} and rerun the same command to restart this extraction from its first batch."
        )
    if not isinstance(name, str) or not CHECKPOINT_NAME.fullmatch(name):
        raise FeaturelensError(
            f"The store's progress for this extraction names the checkpoint {str(name)[:80]!r}, which "
            "is not a featurelens checkpoint file name (state-NNNNNNNNN.json in the run folder); "
            "the runs table was edited by hand: delete that runs row to start the extraction over."
        )
    path = folder / name
    if not path.is_file():
        return None
    try:
        return safe_checkpoint.load(folder, name.removesuffix(".json"), device=device, template=template)
    except (safe_checkpoint.Invalid, OSError) as error:
        raise FeaturelensError(
            f"The extraction checkpoint {path} is not one featurelens wrote for this run ({error}); "
            f"delete the folder {folder} and rerun the same command to restart this extraction."
        ) from None


def prune_checkpoints(folder: Path, keep: str) -> None:
    """Delete every file in ``folder`` except checkpoint ``keep`` (its manifest and tensor
    file; called after the store commits)."""
    if not folder.is_dir():
        return
    kept = safe_checkpoint.files(folder, keep.removesuffix(".json"))
    for path in folder.iterdir():
        if path.name not in kept:
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
    saved = load_checkpoint(folder, progress["checkpoint"], device, template=state.state_dict())
    if saved is not None:
        state.load_state_dict(saved)
        done_batches = int(progress["batches_done"])
    return done_batches, int(progress["seq_floor"])
