"""The community plugin index (``index.json``): search it and resolve names to packages.

The index ships inside featurelens, so ``featurelens plugins search`` works offline.
Each entry says which hooks the plugin implements, which featurelens versions it is
made for, and whether it can be installed today (``status``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

import featurelens
from featurelens.core.errors import PluginError
from featurelens.registry.components import KINDS

#: available: on PyPI; example: the worked example, and repository: a community plugin, both
#: in the featurelens repository (installed from their folder); planned: nobody published it yet.
STATUSES = ("available", "example", "repository", "planned")
#: Statuses whose ``install`` is a folder in a featurelens clone, not a pip requirement.
IN_REPOSITORY = ("example", "repository")
_HOOKS = set(KINDS.values()) | {"register_commands"}


@dataclass(frozen=True)
class IndexEntry:
    """One plugin in the community index."""

    name: str
    package: str
    description: str
    hooks: tuple[str, ...]
    featurelens: str  #: version specifier, e.g. ">=0.1,<0.2"
    status: str  #: one of STATUSES
    install: str | None  #: what to give pip (a folder of a featurelens clone when IN_REPOSITORY); None while planned
    homepage: str | None

    def compatible(self, version: str = featurelens.__version__) -> bool:
        """Whether this featurelens version is inside the entry's specifier."""
        return Version(version) in SpecifierSet(self.featurelens)

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "hooks": list(self.hooks), "compatible": self.compatible()}


def _entry(raw: dict[str, Any], where: str) -> IndexEntry:
    try:
        entry = IndexEntry(raw["name"], raw["package"], raw["description"], tuple(raw["hooks"]),
                           raw["featurelens"], raw["status"], raw.get("install"), raw.get("homepage"))
        SpecifierSet(entry.featurelens)
    except (KeyError, TypeError, InvalidSpecifier) as error:
        raise PluginError(f"The plugin index {where} has a malformed entry {raw!r} ({error}); "
                          "fix or remove it.") from None
    unknown = sorted(set(entry.hooks) - _HOOKS)
    if entry.status not in STATUSES or unknown:
        raise PluginError(f"The plugin index {where} entry {entry.name!r} has status "
                          f"{entry.status!r} or unknown hooks {unknown}; fix the entry.")
    return entry


def load_index(path: str | Path | None = None) -> list[IndexEntry]:
    """Every entry of the index at ``path`` (default: the one shipped with featurelens)."""
    if path is None:
        text = (resources.files("featurelens.registry") / "index.json").read_text("utf-8")
        where = "shipped with featurelens"
    else:
        text, where = Path(path).read_text(encoding="utf-8"), str(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise PluginError(f"The plugin index {where} is not valid JSON ({error}); fix it.") from None
    return [_entry(raw, where) for raw in data.get("plugins", [])]


def search(text: str, entries: list[IndexEntry] | None = None) -> list[IndexEntry]:
    """Entries whose name, package, description or hooks contain every word of ``text``."""
    words = [w.lower() for w in text.split()]
    found = []
    for entry in entries if entries is not None else load_index():
        haystack = " ".join([entry.name, entry.package, entry.description, *entry.hooks]).lower()
        if all(word in haystack for word in words):
            found.append(entry)
    return found


def normalise(name: str) -> str:
    """Package-name comparison as pip does it (case, '-', '_' and '.' alike)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def find(name: str, entries: list[IndexEntry] | None = None) -> IndexEntry | None:
    """The entry whose plugin name or package is ``name``, if any."""
    key = normalise(name)
    for entry in entries if entries is not None else load_index():
        if key in (normalise(entry.name), normalise(entry.package)):
            return entry
    return None
