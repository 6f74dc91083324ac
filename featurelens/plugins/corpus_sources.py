"""Built-in corpus sources: text files and folders, JSONL, Parquet, HF datasets, the stdlib.

Every source yields :class:`Document` objects lazily and in a fixed order, so a corpus
larger than memory streams and a resumed run sees the same windows. The default corpus,
``stdlib``, is the source code (with its docstrings) of Python's standard library: real
English and code, present and identical on every machine with the same Python.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import sysconfig
from pathlib import Path
from typing import Any, Iterator

import featurelens
from featurelens.core.errors import FeaturelensError
from featurelens.core.host.protocols import Document

featurelens_api = 1

_SKIP_DIRS = {"__pycache__", "site-packages", "dist-packages", "test", "tests", "idle_test"}


def _fingerprint(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]


def _files(root: Path, suffixes: tuple[str, ...] | None = None) -> list[Path]:
    """Files under ``root`` (or ``root`` itself) in a fixed order, hidden ones left out."""
    if root.is_file():
        return [root]
    found = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _SKIP_DIRS)
        for name in sorted(names):
            if not name.startswith(".") and (suffixes is None or name.endswith(suffixes)):
                found.append(Path(folder) / name)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def _read_text(path: Path, skip_invalid: bool) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        if skip_invalid:
            return None
        raise FeaturelensError(
            f"{path} is not UTF-8 text (byte {error.start}: {error.reason}); convert it to "
            "UTF-8, remove it, or pass --skip-invalid to skip such files."
        ) from None


class TextCorpus:
    """A text file, or every file in a folder (recursively, sorted by path)."""

    def __init__(self, location: str, *, skip_invalid: bool = False, **_: Any):
        self.root = Path(location).expanduser()
        if not self.root.exists():
            raise FeaturelensError(f"There is no file or folder at {location}; check the --corpus path.")
        self.skip_invalid = skip_invalid
        self.skipped = 0  #: non-UTF-8 files left out (only with skip_invalid)

    def fingerprint(self) -> str:
        files = _files(self.root)
        return _fingerprint("text", [(p.relative_to(self.root).as_posix() if self.root.is_dir()
                                      else p.name, p.stat().st_size) for p in files])

    def __iter__(self) -> Iterator[Document]:
        self.skipped = 0
        for path in _files(self.root):
            text = _read_text(path, self.skip_invalid)
            if text is None:
                self.skipped += 1
                continue
            if text.strip():
                yield Document(text, str(path))


class StdlibCorpus(TextCorpus):
    """The ``.py`` files of Python's standard library (tests and site-packages left out)."""

    def __init__(self, location: str = "", **options: Any):
        super().__init__(location or sysconfig.get_paths()["stdlib"], skip_invalid=True)

    def fingerprint(self) -> str:
        files = _files(self.root, (".py",))
        return _fingerprint("stdlib", sys.version_info[:3],
                            [(p.relative_to(self.root).as_posix(), p.stat().st_size) for p in files])

    def __iter__(self) -> Iterator[Document]:
        for path in _files(self.root, (".py",)):
            text = _read_text(path, True)
            if text and text.strip():
                yield Document(text, path.relative_to(self.root).as_posix())


class JsonlCorpus:
    """One document per line of a JSONL file (or every ``.jsonl`` file of a folder)."""

    def __init__(self, location: str, *, field: str | None = None, **_: Any):
        self.root = Path(location).expanduser()
        if not self.root.exists():
            raise FeaturelensError(f"There is no JSONL file at {location}; check the --corpus path.")
        self.field = field or "text"

    def fingerprint(self) -> str:
        return _fingerprint("jsonl", self.field,
                            [(p.name, p.stat().st_size) for p in _files(self.root, (".jsonl",))])

    def __iter__(self) -> Iterator[Document]:
        for path in _files(self.root, (".jsonl", ".json")) if self.root.is_dir() else [self.root]:
            with path.open("rb") as handle:
                for number, raw in enumerate(handle, 1):
                    if not raw.strip():
                        continue
                    try:
                        row = json.loads(raw.decode("utf-8"))
                    except UnicodeDecodeError:
                        raise FeaturelensError(
                            f"{path} line {number} is not UTF-8; convert the file to UTF-8.") from None
                    except ValueError:
                        raise FeaturelensError(
                            f"{path} line {number} is not valid JSON; fix or remove that line.") from None
                    except RecursionError:  # [[[[... thousands deep: no document is shaped so
                        raise FeaturelensError(
                            f"{path} line {number} is JSON nested too deeply to read; a document is "
                            "an object with a text field, so fix or remove that line.") from None
                    if not isinstance(row, dict) or not isinstance(row.get(self.field), str):
                        raise FeaturelensError(
                            f"{path} line {number} has no text field {self.field!r}; name the field "
                            "that holds the text with --text-field."
                        )
                    if row[self.field].strip():
                        yield Document(row[self.field], f"{path}#{number}")


class ParquetCorpus:
    """One document per row of a Parquet file's text column, read in record batches."""

    def __init__(self, location: str, *, field: str | None = None, **_: Any):
        self.root = Path(location).expanduser()
        if not self.root.exists():
            raise FeaturelensError(f"There is no Parquet file at {location}; check the --corpus path.")
        self.field = field or "text"

    def fingerprint(self) -> str:
        return _fingerprint("parquet", self.field,
                            [(p.name, p.stat().st_size) for p in _files(self.root, (".parquet",))])

    def __iter__(self) -> Iterator[Document]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        for path in _files(self.root, (".parquet",)):
            try:
                handle = pq.ParquetFile(path)
            except (pa.ArrowException, OSError) as error:
                raise FeaturelensError(
                    f"{path} is not a readable Parquet file ({' '.join(str(error).split())[:200]}); "
                    "re-write it, or point --corpus at the text instead.") from None
            if self.field not in handle.schema_arrow.names:
                raise FeaturelensError(
                    f"{path} has no column {self.field!r} (it has {', '.join(handle.schema_arrow.names)}); "
                    "name the text column with --text-field."
                )
            row = 0
            for batch in _batches(handle, self.field, path):
                for text in batch.column(0).to_pylist():
                    if isinstance(text, str) and text.strip():
                        yield Document(text, f"{path}#{row}")
                    row += 1


def _batches(handle: Any, field: str, path: Path) -> Iterator[Any]:
    """Record batches of one column; a corrupt page is one sentence, not an Arrow traceback."""
    import pyarrow as pa

    batches = handle.iter_batches(columns=[field], batch_size=1024)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except (pa.ArrowException, OSError) as error:
            raise FeaturelensError(
                f"{path} is damaged: its column {field!r} cannot be read "
                f"({' '.join(str(error).split())[:200]}); re-write the file.") from None
        yield batch


class HFDatasetCorpus:
    """A Hugging Face dataset: a ``save_to_disk`` folder (read directly), or a hub id.

    Local folders are read from their Arrow files with pyarrow, so the ``datasets``
    package is not needed; hub ids need it and a network connection.
    """

    def __init__(self, location: str, *, field: str | None = None, split: str = "train", **_: Any):
        self.location = location
        self.field = field or "text"
        self.split = split
        root = Path(location).expanduser()
        self.files = _files(root, (".arrow",)) if root.is_dir() else []
        if root.exists() and not self.files:
            raise FeaturelensError(
                f"{location} is not a dataset saved with save_to_disk (no .arrow files); "
                "pass such a folder, a JSONL/Parquet file, or a text folder."
            )

    def fingerprint(self) -> str:
        if self.files:
            return _fingerprint("hf", self.field, [(p.name, p.stat().st_size) for p in self.files])
        return _fingerprint("hf-hub", self.location, self.split, self.field)

    def __iter__(self) -> Iterator[Document]:
        if self.files:
            yield from self._local()
            return
        try:
            import datasets
        except ImportError:
            raise FeaturelensError(
                f"{self.location!r} is not a local folder, and reading hub datasets needs the "
                "datasets package; pip install datasets, or pass a local file."
            ) from None
        try:
            rows = datasets.load_dataset(self.location, split=self.split, streaming=True)
            for number, row in enumerate(rows):
                if isinstance(row.get(self.field), str) and row[self.field].strip():
                    yield Document(row[self.field], f"{self.location}#{number}")
        except FeaturelensError:
            raise
        except Exception as error:  # noqa: BLE001 - network and hub errors vary by version
            raise FeaturelensError(
                f"The dataset {self.location!r} could not be read from the hub ({type(error).__name__}); "
                "without network, pass a local file or folder."
            ) from None

    def _local(self) -> Iterator[Document]:
        import pyarrow as pa

        for path in self.files:
            with pa.memory_map(str(path)) as source:
                try:
                    reader = pa.ipc.open_stream(source)
                except pa.ArrowInvalid:
                    reader = pa.ipc.open_file(source)
                batches = reader if hasattr(reader, "__iter__") else (
                    reader.get_batch(i) for i in range(reader.num_record_batches))
                row = 0
                for batch in batches:
                    if self.field not in batch.schema.names:
                        raise FeaturelensError(
                            f"{path} has no column {self.field!r} (it has {', '.join(batch.schema.names)}); "
                            "name the text column with --text-field."
                        )
                    for text in batch.column(self.field).to_pylist():
                        if isinstance(text, str) and text.strip():
                            yield Document(text, f"{path.name}#{row}")
                        row += 1


@featurelens.hookimpl
def register_corpus_sources(register: Any) -> None:
    register("text", TextCorpus, description="A UTF-8 text file, or every file of a folder (sorted)")
    register("jsonl", JsonlCorpus, description="JSON lines; the text is in a named field (default text)")
    register("parquet", ParquetCorpus, description="Parquet; the text is in a named column (default text)")
    register("hf", HFDatasetCorpus, description="A Hugging Face dataset: save_to_disk folder, or hub id with network")
    register("stdlib", StdlibCorpus, description="Python standard library source and docstrings (offline default)")
