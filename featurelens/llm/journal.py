"""The response journal: every paid answer is on disk before it counts as received.

The engine commits its rows to DuckDB in batches (a commit per response would cost
most of the throughput), so between two commits the answers live only in memory. The
journal closes that gap: each answer's cache entry, its ``llm_calls`` row and its
``llm_attempts`` row are appended to ``<store>.journal`` as one JSON line the moment the
answer arrives, and each attempt is noted before it is sent. A write that returned is
in the kernel's page cache, so ``kill -9`` cannot lose it (a power cut can: the journal
is not fsynced, a choice made for throughput).

Every line carries an HMAC-SHA256 of its JSON, keyed by a random secret kept beside the
store in ``<store>.journal.key`` (created once, mode 0600). Replay refuses a line whose code
does not match, so a journal planted by someone who cannot read that file (or copied from
another store) is refused, however well formed, instead of putting its answers in the
cache. The journal and its key are opened without following symbolic links, and must be
plain files: a link planted in their place is refused, never written through. Each line
is also scrubbed of the configured key values before it is written.

When a batch of rows commits, the journal is emptied down to the attempts still in
flight. When a store is opened for labeling, :func:`replay` first puts whatever a killed
process left in the journal into the store (``INSERT OR IGNORE`` on deterministic keys,
so replaying twice changes nothing); an attempt that was sent but never answered is
recorded as ``interrupted``. A rerun therefore finds every received answer in the cache
and sends none of them again.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets as random_secrets
import stat
from pathlib import Path
from typing import Any

import polars as pl

from featurelens.core.errors import StoreError
from featurelens.core.redaction import configured_secrets, redact_values
from featurelens.core.store.database import Store
from featurelens.core.store.disk_full import is_disk_full
from featurelens.llm import cache

#: Money tables a journal line can hold, with their deterministic keys.
KEYS = {"llm_cache": "cache_key", "llm_calls": "call_id", "llm_attempts": "attempt_id"}


def journal_path(store: Store) -> Path | None:
    """Where the store's journal lives; ``None`` for an in-memory store (nothing is durable)."""
    path = getattr(store, "path", None)
    if path is None or str(path) in ("", ":memory:"):
        return None
    return Path(f"{path}.journal")


def key_path(path: Path) -> Path:
    """The file holding the journal's HMAC key, beside the journal."""
    return path.with_name(path.name + ".key")


def _refuse_link(path: Path, what: str) -> None:
    """One sentence if ``path`` exists and is not a plain file (a link, a folder, a device)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode):
        raise StoreError(f"The {what} {path} is a symbolic link; featurelens writes that file itself "
                         f"and never through a link. Remove the link (rm {path}) and run the command again.")
    if not stat.S_ISREG(info.st_mode):
        raise StoreError(f"The {what} {path} is not a plain file (a folder or a device); featurelens "
                         f"writes that file itself. Move it aside (mv {path} {path}.bad) and run the "
                         "command again.")


def _open_new(path: Path, flags: int) -> int:
    """``os.open`` of a plain file that is not a link (``O_NOFOLLOW``), as one sentence on failure."""
    _refuse_link(path, "response journal")
    try:
        return os.open(path, flags | os.O_NOFOLLOW, 0o600)
    except OSError as error:
        if is_disk_full(error):
            raise
        raise StoreError(f"The response journal {path} cannot be opened ({error.strerror}); "
                         "fix the folder's permissions or move the file aside, and run the command "
                         "again.") from None


def journal_key(path: Path, *, create: bool) -> bytes | None:
    """The journal's HMAC key, made (0600, random) when ``create`` and absent; ``None``
    when absent and not to be made. A key others could read is refused: it would let
    them sign a journal."""
    where = key_path(path)
    _refuse_link(where, "journal key")
    try:
        fd = os.open(where, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        if not create:
            return None
        fd = os.open(where, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, random_secrets.token_hex(32).encode("ascii") + b"\n")
        finally:
            os.close(fd)
        return journal_key(path, create=False)
    try:
        info = os.fstat(fd)
        data = os.read(fd, 200).strip()
    finally:
        os.close(fd)
    if info.st_mode & 0o077:
        raise StoreError(f"The journal key {where} can be read by other users; it signs the answers "
                         f"a killed run left. Run chmod 600 {where} and run the command again.")
    if len(data) != 64 or any(c not in b"0123456789abcdef" for c in data):
        raise StoreError(f"The journal key {where} is not one featurelens wrote (64 hex characters); "
                         f"move it aside (mv {where} {where}.bad) together with the journal "
                         f"({path}), and run the command again.")
    return data


def _mac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).hexdigest().encode("ascii")


def _line(record: dict[str, Any], key: bytes = b"", secrets: list[str] | None = None) -> bytes:
    """One journal line: the record as JSON (key values masked), a tab and its HMAC."""
    text = json.dumps(record, separators=(",", ":"), ensure_ascii=False, default=str)
    data = redact_values(text, secrets or ()).encode("utf-8")
    return data + b"\t" + _mac(key, data) + b"\n"


class ResponseJournal:
    """Append-only JSON lines beside the store; see the module docstring."""

    def __init__(self, path: Path | None):
        self.path = path
        self._fd: int | None = None
        self._open: dict[str, dict[str, Any]] = {}  #: attempt_id -> attempt row, sent, no answer yet
        self._key = b""
        self._secrets = configured_secrets()
        if path is not None:
            self._key = journal_key(path, create=True) or b""
            self._fd = _open_new(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)

    def _line(self, record: dict[str, Any]) -> bytes:
        return _line(record, self._key, self._secrets)

    def _write(self, record: dict[str, Any]) -> None:
        if self._fd is not None:
            os.write(self._fd, self._line(record))

    def sent(self, attempt: dict[str, Any]) -> None:
        """Note an attempt before its request goes out (``interrupted`` if nothing follows)."""
        self._open[attempt["attempt_id"]] = attempt
        self._write({"sent": attempt})

    def ended(self, rows: dict[str, list[dict[str, Any]]]) -> None:
        """Make an attempt's outcome durable: ``{table: [row, ...]}`` of the money tables."""
        for row in rows.get("llm_attempts", ()):
            self._open.pop(row["attempt_id"], None)
        self._write({"rows": rows})

    def rejected(self, keys: list[str]) -> None:
        """These cached answers could not be read: a replay must not restore them."""
        self._write({"rejected": keys})

    def committed(self) -> None:
        """Everything written so far is in the store: keep only the attempts in flight.

        The new content is written beside the journal and renamed over it, so a kill at
        any moment leaves either the old journal or the new one, never a torn one.
        """
        if self._fd is None or self.path is None:
            return
        fresh = self.path.with_name(self.path.name + ".new")
        _refuse_link(fresh, "response journal")
        fresh.unlink(missing_ok=True)
        fd = _open_new(fresh, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND)
        if self._open:
            os.write(fd, b"".join(self._line({"sent": a}) for a in self._open.values()))
        os.replace(fresh, self.path)
        os.close(self._fd)
        self._fd = fd

    def close(self) -> None:
        """Close; an empty journal (everything committed) is removed, so none lingers."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            if self.path is not None and self.path.is_file() and not self.path.is_symlink() \
                    and self.path.stat().st_size == 0:
                self.path.unlink()


def _damaged(path: Path, line: int | None, problem: str) -> StoreError:
    where = f"line {line}: " if line else ""
    return StoreError(
        f"The response journal {path} cannot be replayed ({where}{problem}); it holds the "
        "answers a killed run received and featurelens writes it alone. Move it aside "
        f"(mv {path} {path}.bad) and run the same command again to go on without those answers.")


def _checked(path: Path, line: int, record: Any) -> dict[str, Any]:
    """``record`` when it has the shape :class:`ResponseJournal` writes, else a clear error."""
    def keyed(row: Any, key: str) -> bool:
        return isinstance(row, dict) and isinstance(row.get(key), str)

    if not isinstance(record, dict):
        raise _damaged(path, line, "not a journal record")
    if "sent" in record and not keyed(record["sent"], "attempt_id"):
        raise _damaged(path, line, "a sent attempt without its attempt_id")
    if "rows" in record:
        rows = record["rows"]
        if not isinstance(rows, dict) or not all(isinstance(v, list) for v in rows.values()):
            raise _damaged(path, line, "rows that are not lists per table")
        for table, key in KEYS.items():
            if not all(keyed(row, key) for row in rows.get(table, ())):
                raise _damaged(path, line, f"a {table} row without its {key}")
        for row in rows.get("llm_cache", ()):
            if not isinstance(row.get("response"), str) or cache.checked_response(row["response"]) is None:
                raise _damaged(path, line, "a cached response that is not an answer's shape")
    if "rejected" in record and not (isinstance(record["rejected"], list)
                                     and all(isinstance(k, str) for k in record["rejected"])):
        raise _damaged(path, line, "rejected cache keys that are not a list of strings")
    return record


def _read(path: Path, key: bytes) -> list[dict[str, Any]]:
    records = []
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as handle:
        for line, raw in enumerate(handle, 1):
            if not raw.endswith(b"\n"):
                break  # a line cut short by the kill: its answer was not yet counted
            data, tab, code = raw[:-1].rpartition(b"\t")
            if not tab or not hmac.compare_digest(code, _mac(key, data)):
                raise _damaged(path, line, "its authentication code does not match this store's journal "
                                           "key, so featurelens did not write it for this store")
            try:
                record = json.loads(data)
            except ValueError:  # whole lines are written at once: a complete bad one is damage
                raise _damaged(path, line, "not JSON") from None
            records.append(_checked(path, line, record))
    return records


def replay(store: Store) -> int:
    """Move what a killed process left in the journal into the store; returns the answers
    restored. Safe to call on every start: an empty or missing journal does nothing."""
    path = journal_path(store)
    if path is None:
        return 0
    stale = path.with_name(path.name + ".new")
    _refuse_link(stale, "response journal")
    stale.unlink(missing_ok=True)  # a compaction that did not reach its rename: the journal is intact
    _refuse_link(path, "response journal")
    if not path.exists() or path.stat().st_size == 0:
        return 0
    key = journal_key(path, create=False)
    if key is None:
        raise _damaged(path, None, f"the journal key {key_path(path)} is missing, so its lines cannot be "
                                   "authenticated")
    tables: dict[str, list[dict[str, Any]]] = {t: [] for t in KEYS}
    sent: dict[str, dict[str, Any]] = {}
    rejected: set[str] = set()
    for record in _read(path, key):
        if "sent" in record:
            sent[record["sent"]["attempt_id"]] = record["sent"]
        elif "rows" in record:
            for table, rows in record["rows"].items():
                if table in tables:
                    tables[table].extend(rows)
            for row in record["rows"].get("llm_attempts", ()):
                sent.pop(row["attempt_id"], None)
        elif "rejected" in record:
            rejected.update(record["rejected"])
    for attempt in sent.values():  # sent, never answered: the process died waiting
        tables["llm_attempts"].append({**attempt, "outcome": "interrupted",
                                       "error": "the process stopped before an answer arrived"})
    tables["llm_cache"] = [r for r in tables["llm_cache"] if r["cache_key"] not in rejected]
    try:
        with store.transaction():
            for table, rows in tables.items():
                if rows:
                    frame = pl.DataFrame(rows, infer_schema_length=None).unique(
                        subset=KEYS[table], keep="last", maintain_order=True)
                    store.insert(table, frame, on_conflict="ignore")
            if rejected:
                keys = sorted(rejected)
                store.execute(f"DELETE FROM llm_cache WHERE cache_key IN ({','.join('?' * len(keys))})", keys)
    except (StoreError, pl.exceptions.PolarsError, TypeError, ValueError) as error:
        if is_disk_full(error):
            raise
        raise _damaged(path, None, " ".join(str(error).split())[:200]) from None
    path.unlink()
    return len(tables["llm_cache"])
