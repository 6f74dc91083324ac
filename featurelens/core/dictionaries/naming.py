"""Dictionary names people can read and type.

A dictionary's id appears in the store, the browser's URLs and every command that
selects it, so a generated one says what it is: ``<model>-l<layer>-<architecture><width>-<key>``
(``smollm2-l6-topk8x-1a2b3c4d``), the key a short hash that keeps different settings
apart. ``train --name`` and ``dictionaries import --name`` choose it instead.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from featurelens.core.errors import FeaturelensError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+-]{0,99}$")
_LAYER = re.compile(r"(?:^|\.)(?:blocks|layers|h|layer)\.(\d+)(?:\.|$)")
#: The file a training output keeps its summary in (core.training.api.SUMMARY).
TRAINING_SUMMARY = "training.json"


def check_name(name: str) -> str:
    """``name`` if it is usable as a dictionary id, else one sentence saying what is allowed."""
    if not _NAME.match(name) or name == "identity" or name.startswith("identity:"):
        raise FeaturelensError(
            f"--name {name!r} cannot name a dictionary; use up to 100 letters, digits and . _ - + : "
            "starting with a letter or digit (and not 'identity'), e.g. --name smollm2-l6-topk-run2.")
    return name


def short_model(model: str) -> str:
    """``smollm2`` from ``smollm2``, ``gpt2`` from ``/models/gpt2/``, ``qwen2.5-0.5b`` from a hub id."""
    name = Path(str(model).rstrip("/")).name.lower() or "model"
    return re.sub(r"[^a-z0-9.]+", "-", name).strip("-") or "model"


def layer_tag(hookpoint: str) -> str:
    """``l6`` for any hookpoint in layer 6, else the hookpoint itself made name-safe."""
    found = _LAYER.search(hookpoint)
    return f"l{found.group(1)}" if found else re.sub(r"[^a-z0-9]+", "-", hookpoint.lower()).strip("-")


def readable_name(model: str, hookpoint: str, architecture: str, width: str, key: str) -> str:
    """``<model>-l<layer>-<architecture><width>-<key>``, e.g. ``smollm2-l6-topk8x-1a2b3c4d``."""
    arch = re.sub(r"[^a-z0-9]+", "", architecture.lower()) or "dict"
    return f"{short_model(model)}-{layer_tag(hookpoint)}-{arch}{width}-{key[:8]}"


def settings_key(settings: dict[str, Any]) -> str:
    """A short stable hash of the settings that shaped a dictionary."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:8]


def trained_name(folder: str | Path) -> str | None:
    """The name ``featurelens train`` gave the dictionary saved in ``folder``, if any."""
    summary = Path(folder) / TRAINING_SUMMARY
    try:
        found = json.loads(summary.read_text(encoding="utf-8")).get("dictionary_id")
    except (OSError, ValueError, AttributeError):
        return None
    return str(found) if found else None


def resolve_stored_name(spec: str, store_path: str | Path | None) -> tuple[str, str | None]:
    """What ``--dictionary SPEC`` loads, and the name the store already knows it by.

    A name recorded by ``dictionaries import`` (or an earlier extraction) resolves to the
    folder it came from; a folder the store knows keeps its recorded name, so extracting
    an imported dictionary by path does not store it a second time under another id.
    ``identity`` and anything the store does not know come back unchanged, with no name.
    """
    from featurelens.core.store.database import Store
    from featurelens.core.store.location import default_store_path

    if spec == "identity":
        return spec, None
    store_file = Path(store_path) if store_path is not None else default_store_path()
    if not store_file.exists():
        return spec, None
    with Store.open(store_file, read_only=True) as store:
        rows = store.execute("SELECT dictionary_id, source FROM dictionaries WHERE source IS NOT NULL")
    return resolve_in(spec, rows)


def resolve_in(spec: str, rows: list[tuple[Any, ...]]) -> tuple[str, str | None]:
    """:func:`resolve_stored_name` over ``(dictionary_id, source)`` rows already read."""
    if spec == "identity":
        return spec, None
    path = Path(spec).expanduser()
    if path.exists():
        here = path.resolve()
        known = [row[0] for row in rows if row[1] and Path(row[1]).expanduser().resolve() == here]
        return spec, (known[0] if len(known) == 1 else None)
    named = [row[1] for row in rows if row[0] == spec and row[1] and Path(row[1]).expanduser().exists()]
    return (named[0], spec) if named else (spec, None)
