"""A static HTML report: the browser's pages, rendered by the same functions as
``featurelens serve`` (the feature pages, a million of them, by
:mod:`featurelens.export.html_pages` from static pieces held to the same template's bytes),
with relative links so the folder opens straight from disk (or any static host). Layout: ``index.html`` (dictionaries),
``features/<dictionary>/index[-N].html`` (feature lists, 500 per page),
``features/<dictionary>/overview.html`` (counts and histograms of the whole
dictionary), ``features/<dictionary>/<n>.html`` (one per feature, example windows cut
around their peak: see :mod:`featurelens.export.html_windows`) and ``static/`` (the
stylesheet, shared by every page).
Search and SQL need a server and are left out."""

from __future__ import annotations

import hashlib
from typing import Any, Iterator

from featurelens.browser.links import StaticLinks
from featurelens.browser.overview import load_overview, overview_page
from featurelens.browser.queries import BrowserData, Page
from featurelens.browser.render import dictionary_page, index_page
from featurelens.browser.server import static_files
from featurelens.core.progress import progress
from featurelens.export.html_pages import PageWriter
from featurelens.export.html_windows import note
from featurelens.export import workers
from featurelens.export.staging import Staging

LIST_PAGE_SIZE = 500
BATCH = 200
#: The assets a report's pages use: its pages run no script, so the graph page's is left out.
REPORT_ASSETS = ("style.css",)


def write(data: BrowserData, staging: Staging, keys: list[tuple[str, int]], processes: int | None = None) -> int:
    """Write the report for the features in ``keys``; returns the number of feature pages.

    A large report spreads its feature pages over worker processes
    (:mod:`featurelens.export.workers`; ``processes`` overrides how many)."""
    for name, content in static_files().items():
        if name in REPORT_ASSETS:
            staging.write_bytes(f"static/{name}", content)
    by_dictionary: dict[str, list[int]] = {}
    for dictionary_id, feature in keys:
        by_dictionary.setdefault(dictionary_id, []).append(feature)
    dictionaries = [d for d in data.dictionaries() if d["dictionary_id"] in by_dictionary]
    for d in dictionaries:
        d["n_features"] = len(by_dictionary[d["dictionary_id"]])
    staging.write_text("index.html", index_page(dictionaries, StaticLinks()))
    deep = StaticLinks().at_depth(2)
    n_processes = workers.processes_for(len(keys), processes)
    with progress(len(keys), desc="export html", unit="feature") as bar:
        def tasks() -> Iterator[tuple[Any, ...]]:
            for d in dictionaries:
                did = d["dictionary_id"]
                features = by_dictionary[did]
                pages = max(1, -(-len(features) // LIST_PAGE_SIZE))
                written = 0
                for start in range(0, len(features), BATCH):
                    # the list pages of these features, written here while the workers draw theirs
                    while written < min(pages, -(-(start + BATCH) // LIST_PAGE_SIZE)):
                        _write_list(data, staging, d, features, written, pages, deep)
                        written += 1
                    chunk = features[start:start + BATCH]
                    if staging.chunk_done(_chunk_name(did, chunk)):
                        bar.update(len(chunk))
                        continue
                    before = features[start - 1] if start > 0 else None
                    after = features[start + BATCH] if start + BATCH < len(features) else None
                    yield staging, did, chunk, before, after
                for page in range(written, pages):
                    _write_list(data, staging, d, features, page, pages, deep)
                overview = load_overview(data.query, d)
                staging.write_text(deep.overview(did).removeprefix(deep.root), overview_page(overview, deep))

        if n_processes > 1:
            workers.run(data.path, _pages_in_worker, tasks(), n_processes, bar.update)
        else:
            for task in tasks():
                bar.update(_pages(data, *task))
    return len(keys)


def _pages(data: BrowserData, staging: Staging, did: str, chunk: list[int],
           before: int | None, after: int | None) -> int:
    """The pages of the features of ``chunk`` (``before`` and ``after`` its neighbours in
    the report), written as one chunk of the staging folder; returns the features."""
    deep = StaticLinks().at_depth(2)
    order = [before, *chunk, after]
    neighbours = {feature: (order[i - 1], order[i + 1]) for i, feature in enumerate(chunk, 1)}
    writer = _writer(data, did, deep)

    def pages() -> Iterator[tuple[str, bytes]]:
        for index, page in writer.pages(chunk, neighbours):
            yield _rel(deep, did, index), page.encode("utf-8")

    staging.write_chunk(_chunk_name(did, chunk), pages())
    return len(chunk)


#: The page writer of the last dictionary drawn in this process: it keeps the sequences it
#: read (:class:`featurelens.export.html_pages.Sequences`) for the chunks after.
_last: list[PageWriter] = []


def _writer(data: BrowserData, dictionary_id: str, links: StaticLinks) -> PageWriter:
    """The writer of ``dictionary_id``'s pages from ``data``, the last one when it is the same."""
    if _last and _last[0].data is data and _last[0].did == dictionary_id and _last[0].links == links:
        return _last[0]
    _last[:] = [PageWriter(data, dictionary_id, links, note())]
    return _last[0]


def _chunk_name(dictionary_id: str, chunk: list[int]) -> str:
    """The staging chunk of the pages of ``chunk`` (features of one dictionary)."""
    digest = hashlib.sha256(dictionary_id.encode("utf-8")).hexdigest()[:16]
    return f"{digest}-{chunk[0]}-{chunk[-1]}-{len(chunk)}"


def _pages_in_worker(*task: Any) -> int:
    """:func:`_pages` in a worker process (:mod:`featurelens.export.workers`)."""
    return _pages(workers.store(), *task)


def _rel(links: StaticLinks, dictionary_id: str, feature: int) -> str:
    return links.feature(dictionary_id, feature).removeprefix(links.root)


def _write_list(data: BrowserData, staging: Staging, dictionary: dict, features: list[int], page: int,
                pages: int, links: StaticLinks) -> None:
    """List page ``page`` of ``pages`` of the report's (sorted) ``features``."""
    did = dictionary["dictionary_id"]
    chunk = features[page * LIST_PAGE_SIZE:(page + 1) * LIST_PAGE_SIZE]
    # the selection is sorted, so every selected feature between the chunk's ends is in it
    rows = data.features_in(did, chunk) if chunk else []
    listing_page = Page(rows, page, page + 1 < pages)
    name = links.dictionary(did, page).removeprefix(links.root)
    staging.write_text(name, dictionary_page(dictionary, listing_page, links))
