"""Interruption-safe export folders.

An export is written into ``<output>.partial/`` and renamed to ``<output>`` only when
complete, so ``<output>`` is either the previous finished export or the new one, never
half of each. Every file inside is itself written to a temporary name and renamed, so
a killed export leaves only whole files; a rerun with the same request against an
unchanged store finds the ``.partial`` folder, keeps the files already written and
does the rest. If the request or the store changed, the stale partial work is dropped.

Many small files of one batch (a report's feature pages) are written as a *chunk*
instead (:meth:`Staging.write_chunk`): each file straight to its name, then the chunk's
marker under ``.chunks/``: one file operation per page instead of a temporary name and
a rename. A chunk killed halfway has no marker, so a rerun writes all of its files again
(over the cut ones), and the markers are removed when the export finishes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from featurelens.core.errors import FeaturelensError

MANIFEST = "featurelens-export.json"
#: Folder of the markers of the chunks written completely (removed by :meth:`Staging.finish`).
CHUNKS = ".chunks"


@dataclass
class Staging:
    """The folder being written and what it will become."""

    final: Path
    work: Path
    fingerprint: str
    resumed: bool

    def path(self, relative: str) -> Path:
        return self.work / relative

    def done(self, relative: str) -> bool:
        """True if a previous attempt already wrote this file completely."""
        return self.resumed and (self.work / relative).is_file()

    def chunk_done(self, name: str) -> bool:
        """True if a previous attempt wrote the chunk ``name`` completely."""
        return self.resumed and (self.work / CHUNKS / name).is_file()

    def write_chunk(self, name: str, files: Iterable[tuple[str, bytes]]) -> None:
        """Write ``files`` (relative path, contents) each straight to its path, then the
        marker saying chunk ``name`` is whole. A folder is made when a write finds it
        missing."""
        for relative, data in files:
            path = self.work / relative
            try:
                handle = open(path, "wb")
            except FileNotFoundError:
                path.parent.mkdir(parents=True, exist_ok=True)
                handle = open(path, "wb")
            with handle:
                handle.write(data)
        write_atomic(self.work / CHUNKS / name, b"")

    def write_bytes(self, relative: str, data: bytes) -> None:
        write_atomic(self.work / relative, data)

    def write_text(self, relative: str, text: str) -> None:
        write_atomic(self.work / relative, text.encode("utf-8"))

    def finish(self, manifest: dict[str, Any]) -> None:
        """Write the manifest and swap the finished folder into place."""
        marker = self.work / ".fingerprint"
        if marker.exists():
            marker.unlink()
        shutil.rmtree(self.work / CHUNKS, ignore_errors=True)
        self.write_text(MANIFEST, json.dumps({**manifest, "fingerprint": self.fingerprint}, indent=2))
        old = self.final.with_name(self.final.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        if self.final.exists():
            os.replace(self.final, old)
        os.replace(self.work, self.final)
        if old.exists():
            shutil.rmtree(old)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and a rename. The folder is made
    when the write finds it missing (a report of a million pages asks once per folder,
    not once per page)."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
    os.replace(tmp, path)


def fingerprint(request: dict[str, Any], store_state: list[Any]) -> str:
    """Hash of what was asked and of the store's contents summary."""
    blob = json.dumps([request, store_state], default=str, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def stage(output: Path, request: dict[str, Any], store_state: list[Any]) -> Staging:
    """Prepare ``<output>.partial`` (resuming it when it matches this request)."""
    output = output.resolve()
    if output.exists() and not output.is_dir():
        raise FeaturelensError(f"--output {output} is a file; give a folder path for the export.")
    if output.is_dir() and any(output.iterdir()) and not (output / MANIFEST).is_file():
        raise FeaturelensError(
            f"--output {output} already holds files that are not a featurelens export; "
            "choose an empty or new folder so nothing of yours is replaced.")
    if not output.parent.exists():
        raise FeaturelensError(f"The folder {output.parent} for --output does not exist; create it first.")
    if not output.parent.is_dir():
        raise FeaturelensError(f"{output.parent} is a file, not a folder; give --output a path inside a folder.")
    digest = fingerprint(request, store_state)
    work = output.with_name(output.name + ".partial")
    resumed = False
    if work.is_dir():
        marker = work / ".fingerprint"
        if marker.is_file() and marker.read_text().strip() == digest:
            resumed = True
        else:
            shutil.rmtree(work)
    if not resumed:
        try:
            work.mkdir(parents=True)
            (work / ".fingerprint").write_text(digest)
        except OSError as error:
            shutil.rmtree(work, ignore_errors=True)
            raise FeaturelensError(f"Cannot write the export next to {output} ({error.strerror or error}); "
                                   "choose a folder you can write to.") from None
    return Staging(output, work, digest, resumed)
