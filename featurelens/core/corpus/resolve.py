"""Corpus resolution: a ``--corpus`` string to a registered corpus source.

Core resolves names through the registry, so it never imports the built-in sources;
a plugin's source is found the same way as ``text`` or ``stdlib``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from featurelens.core.errors import FeaturelensError
from featurelens.core.host.manager import get_registry
from featurelens.core.host.protocols import CorpusSource


def resolve_corpus(spec: str, **options: Any) -> CorpusSource:
    """``stdlib``, ``source:location`` (any registered source), or a path guessed by suffix."""
    registry = get_registry()
    if spec in ("stdlib", "default"):
        return registry.get("corpus_source", "stdlib").create("", **options)
    name, sep, location = spec.partition(":")
    if sep and name in registry.names("corpus_source") and len(name) > 1:
        return registry.get("corpus_source", name).create(location, **options)
    path = Path(spec).expanduser()
    if not path.exists():
        raise FeaturelensError(
            f"--corpus {spec!r} is not stdlib, a source:location pair, or an existing path; "
            f"known sources: {', '.join(registry.names('corpus_source'))}."
        )
    if path.is_dir() and (path / "dataset_info.json").exists():
        kind = "hf"
    elif path.suffix in (".jsonl",):
        kind = "jsonl"
    elif path.suffix == ".parquet" or (path.is_dir() and any(path.glob("*.parquet"))):
        kind = "parquet"
    else:
        kind = "text"
    return registry.get("corpus_source", kind).create(str(path), **options)
