"""``featurelens export``: choose the features, stage the folder, write, publish.

The selection (``--dictionary``, ``--where``) is checked before anything is written,
so a typo costs one clear sentence and no files. See :mod:`featurelens.export.staging`
for how interrupted exports resume.
"""

from __future__ import annotations

from pathlib import Path

import featurelens
from featurelens.browser.queries import BrowserData
from featurelens.core.errors import FeaturelensError
from featurelens.core.selection import Selection
from featurelens.core.store.database import Store
from featurelens.export import html, parquet
from featurelens.export.neuronpedia import layout as neuronpedia
from featurelens.export.neuronpedia import upload as neuronpedia_upload
from featurelens.export.staging import stage

FORMATS = ("neuronpedia", "neuronpedia-upload", "parquet", "html", "neuronpedia-graph")


def _store_state(data: BrowserData) -> list[object]:
    """A cheap summary that changes whenever results are added (resume safety)."""
    return [data.path.stat().st_mtime_ns, data.path.stat().st_size]


def export(store_path: str | Path | None, fmt: str, output: Path, *, dictionary_id: str | None = None,
           where: str | None = None, visibility: str = "PUBLIC", embeddings: str | None = None,
           graph_id: str | None = None, feature_base_url: str | None = None, all_nodes: bool = False,
           processes: int | None = None) -> str:
    """Export the selected features of the store at ``store_path`` to ``output``; returns a summary line.
    ``processes``: worker processes for the Neuronpedia and HTML writers (default: one per
    core when the export is large, see :mod:`featurelens.export.workers`).

    A write that fails (disk full, no permission) is one sentence; the files already
    finished stay in ``<output>.partial`` and the same command resumes from them."""
    try:
        if fmt == "neuronpedia-graph":
            return _export_graph(store_path, output, graph_id, feature_base_url, all_nodes)
        if graph_id is not None:
            raise FeaturelensError("--graph goes with --format neuronpedia-graph; drop it or change the format.")
        return _export(store_path, fmt, output, dictionary_id=dictionary_id, where=where,
                       visibility=visibility, embeddings=embeddings, processes=processes)
    except OSError as error:
        where_ = f" at {error.filename}" if error.filename else ""
        raise FeaturelensError(
            f"Writing the export failed{where_} ({error.strerror or error}); free space or fix permissions, "
            "then run the same command again to resume.") from None


def _export(store_path: str | Path | None, fmt: str, output: Path, *, dictionary_id: str | None = None,
            where: str | None = None, visibility: str = "PUBLIC", embeddings: str | None = None,
            processes: int | None = None) -> str:
    if fmt not in FORMATS:
        raise FeaturelensError(f"Unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}.")
    embedder = None
    if embeddings is not None:
        from featurelens.export.neuronpedia.embeddings import EMBEDDERS

        if embeddings not in EMBEDDERS:
            raise FeaturelensError(f"Unknown --embeddings {embeddings!r}; Neuronpedia searches "
                                   f"{', '.join(EMBEDDERS)}.")
        if fmt != "neuronpedia":
            raise FeaturelensError("--embeddings applies to --format neuronpedia only (the upload route "
                                   "embeds explanations itself); leave it out.")
        embedder = EMBEDDERS[embeddings]()  # refuses before any file is written when the key is missing
    data = BrowserData(store_path)
    try:
        if dictionary_id is not None and dictionary_id not in {d["dictionary_id"] for d in data.dictionaries()}:
            known = ", ".join(d["dictionary_id"] for d in data.dictionaries()) or "none"
            raise FeaturelensError(
                f"There is no dictionary {dictionary_id!r} in {data.path}; known: {known}.")
        keys = data.feature_keys(where, dictionary_id)
        if not keys:
            raise FeaturelensError(
                "No feature matches the selection; loosen --where / --dictionary, or run a job first.")
        data = _with_logit_effects(data, store_path, Selection(where=where, dictionary_id=dictionary_id))
        request = {"format": fmt, "dictionary": dictionary_id, "where": where, "store": str(data.path),
                   "visibility": visibility, "embeddings": embeddings}
        staging = stage(output, request, _store_state(data))
        if fmt == "neuronpedia":
            count = neuronpedia.write(data, staging, keys, visibility=visibility, embedder=embedder,
                                      processes=processes)
            what = f"{len(keys)} features in {count} batch files"
        elif fmt == "neuronpedia-upload":
            count = neuronpedia_upload.write(data, staging, keys, visibility=visibility)
            what = f"{len(keys)} features in {count} upload-batch payloads"
        elif fmt == "html":
            html.write(data, staging, keys, processes=processes)
            what = f"{len(keys)} feature pages (open index.html)"
        else:
            what = ""
    finally:
        data.close()
    if fmt == "parquet":
        selection, params = _selection(dictionary_id, where)
        with Store.open(store_path, read_only=True) as store:
            names = parquet.write(store, staging, selection, params)
        what = f"{len(names)} tables"
    staging.finish({"format": fmt, "dictionary": dictionary_id, "where": where,
                    "features": len(keys), "featurelens_version": featurelens.__version__})
    return f"Exported {what} to {staging.final}."


def _with_logit_effects(data: BrowserData, store_path: str | Path | None, selection: Selection) -> BrowserData:
    """``data``, after the selection's logit effects that a lazy extraction left pending are
    computed and stored (the store is reopened for writing only then), so every exported
    page and batch file has them."""
    from featurelens.core.lazy_logits import ensure_at, pending_count

    with Store.open(data.path, read_only=True) as store:
        if not pending_count(store, selection):
            return data
    data.close()  # one process holds a DuckDB file in one mode at a time
    ensure_at(data.path, selection)
    return BrowserData(store_path)


def _export_graph(store_path: str | Path | None, output: Path, graph_id: str | None,
                  feature_base_url: str | None, all_nodes: bool) -> str:
    """One attribution graph for Neuronpedia's graph viewer (see export/neuronpedia/graph.py)."""
    from featurelens.browser.graph_data import list_graphs, load_graph
    from featurelens.export.neuronpedia import graph as neuronpedia_graph

    data = BrowserData(store_path)
    try:
        if graph_id is None:
            known = ", ".join(g["graph_id"] for g in list_graphs(data.query)[:10]) or "none yet"
            raise FeaturelensError(f"--format neuronpedia-graph exports one graph; pass --graph ID (known: {known}).")
        graph = load_graph(data.query, graph_id, examples=0)
        if graph is None:
            known = ", ".join(g["graph_id"] for g in list_graphs(data.query)[:10]) or "none yet"
            raise FeaturelensError(f"There is no graph {graph_id!r} in {data.path} (known: {known}); "
                                   "make one with featurelens graph.")
        features = graph.feature_ids()
        if features:  # the detail files carry each feature node's logit effects
            data = _with_logit_effects(data, store_path, Selection(
                where=f"feature IN ({', '.join(str(int(f)) for f in features)})",
                dictionary_id=graph.graph["dictionary_id"]))
        slug = neuronpedia_graph.slug_of(graph_id)
        base = feature_base_url or "features"
        request = {"format": "neuronpedia-graph", "graph": graph_id, "base": base, "all": all_nodes,
                   "store": str(data.path)}
        staging = stage(output, request, _store_state(data))
        count = neuronpedia_graph.write(data.query, graph, staging, slug=slug, feature_json_base_url=base,
                                        all_nodes=all_nodes)
    finally:
        data.close()
    staging.finish({"format": "neuronpedia-graph", "graph": graph_id, "features": count,
                    "featurelens_version": featurelens.__version__})
    return (f"Exported graph {graph_id} to {staging.final}/graph_data/{slug}.json with {count} feature "
            f"detail files under {staging.final}/features (served at {base}).")


def _selection(dictionary_id: str | None, where: str | None) -> tuple[str | None, list[object]]:
    if dictionary_id is None and not where:
        return None, []
    condition, params = Selection(where, dictionary_id).condition()
    return f"SELECT dictionary_id, feature FROM features WHERE {condition}", params
