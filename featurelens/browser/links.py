"""Where pages point: the same renderers serve live pages and write a static report,
and only the URLs differ. ``ServerLinks`` are absolute paths for ``featurelens serve``;
``StaticLinks`` are relative file paths, so the exported folder opens from disk."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from urllib.parse import quote, urlencode


def file_slug(dictionary_id: str) -> str:
    """A file-name-safe folder name for a dictionary id (unique: a hash is added when changed)."""
    slug = re.sub(r"[^A-Za-z0-9_.-]", "_", dictionary_id)
    if slug != dictionary_id or slug.startswith("."):
        slug = f"{slug.lstrip('.')}-{hashlib.sha1(dictionary_id.encode()).hexdigest()[:8]}"
    return slug


@dataclass(frozen=True)
class ServerLinks:
    """URLs of the live browser."""

    live: bool = True

    def static(self, name: str) -> str:
        return f"/static/{name}"

    def home(self) -> str:
        return "/"

    def dictionary(self, dictionary_id: str, page: int = 0, params: dict[str, str] | None = None) -> str:
        """The feature list; ``params`` carry its sort and filters (see browser.feature_list)."""
        query = dict(params or {}) | ({"page": str(page)} if page else {})
        return f"/dictionary/{quote(dictionary_id, safe='')}" + (f"?{urlencode(query)}" if query else "")

    def overview(self, dictionary_id: str) -> str:
        return f"/dictionary/{quote(dictionary_id, safe='')}/overview"

    def feature(self, dictionary_id: str, feature: int) -> str:
        return f"/feature/{quote(dictionary_id, safe='')}/{feature}"

    def search(self, text: str = "", page: int = 0, meaning: bool = False) -> str:
        params = {"q": text} | ({"by": "meaning"} if meaning else {}) | ({"page": page} if page else {})
        return "/search?" + urlencode(params)

    def sql(self) -> str:
        return "/sql"

    def graphs(self) -> str:
        return "/graphs"

    def graph(self, graph_id: str) -> str:
        return f"/graph/{quote(graph_id, safe='')}"

    def graph_data(self, graph_id: str) -> str:
        return f"/graph/{quote(graph_id, safe='')}/data.json"

    def graph_intervene(self, graph_id: str) -> str:
        return f"/graph/{quote(graph_id, safe='')}/intervene"


@dataclass(frozen=True)
class StaticLinks:
    """Relative links inside an exported report; ``root`` leads back to its top folder."""

    root: str = ""
    live: bool = False

    def at_depth(self, depth: int) -> "StaticLinks":
        return StaticLinks("../" * depth)

    def static(self, name: str) -> str:
        return f"{self.root}static/{name}"

    def home(self) -> str:
        return f"{self.root}index.html"

    def dictionary(self, dictionary_id: str, page: int = 0, params: dict[str, str] | None = None) -> str:
        """The exported list (in feature order: sorting and filtering need the server)."""
        suffix = f"-{page + 1}" if page else ""
        return f"{self.root}features/{file_slug(dictionary_id)}/index{suffix}.html"

    def overview(self, dictionary_id: str) -> str:
        return f"{self.root}features/{file_slug(dictionary_id)}/overview.html"

    def feature(self, dictionary_id: str, feature: int) -> str:
        return f"{self.root}features/{file_slug(dictionary_id)}/{feature}.html"
