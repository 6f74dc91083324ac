"""Neuronpedia export: the bucket layout its admin import reads.

The output folder is the root of a dataset bucket. For every dictionary,
``<output>/v1/<modelId>/<sourceId>/`` holds what Neuronpedia's
``GET /api/admin/import?modelId=..&sourceId=..`` loads from ``v1/<modelId>/<sourceId>``:
``release.jsonl``, ``model.jsonl``, ``sourceset.jsonl``, ``source.jsonl`` (one row each),
then ``features/``, ``activations/`` and ``explanations/`` as gzipped JSON Lines of
``Neuron``, ``Activation`` and ``Explanation`` rows keyed by ``schema.prisma``'s column
names (see :mod:`featurelens.export.neuronpedia.rows`). The source id is
``<layer>-<sourceSetName>``, and the source set is exported with it.

``<output>/v1/config/`` holds the five files the importer reads first, from that fixed
place, for every source (:func:`rows.config_rows`); without them it stops before the
features. Each source folder also holds ``explanation_scores/`` (``ExplanationScore``
rows, which the importer does not read; see the README for loading them) and
``replace.sql`` (what to run before re-importing a source after a new extraction).

Batches are atomic files written features-last, so an interrupted export resumes
at the first batch whose ``features`` file is missing.
"""

from __future__ import annotations

import gzip
import io
import math
from typing import Any, Callable, Iterable, Iterator

from featurelens.browser.queries import BrowserData
from featurelens.core.progress import progress
from featurelens.export.neuronpedia import json_lines as npjson
from featurelens.export.neuronpedia import activation_lines, listing, rows
from featurelens.export import workers
from featurelens.export.staging import Staging

#: Features per batch file (the importer inserts each file in chunks of 65,000 lines).
BATCH_SIZE = 1000

#: The dataset version folder the importer reads (``DATASET_BASE_PATH`` in its s3.ts).
VERSION = "v1"

#: Quantile examples read per feature: all that extraction stores (its ranks run from the
#: weakest window to the strongest, so any smaller cut would drop the upper intervals).
ALL_QUANTILE = 1_000_000

#: text list -> one vector per text (see :mod:`.embeddings`).
Embedder = Callable[[list[str]], list[list[float]]]


def _jsonl(lines: list[dict[str, Any]]) -> bytes:
    return npjson.lines(lines)


#: zlib level of the batch files. benchmarks/export_gzip_level.py on the million-feature
#: store (activation lines of 1,000 features, 9.2 MiB): level 3 takes 0.42x the CPU of
#: level 6 (zlib's default) for files 1.19x its size, level 1 0.57x for 1.29x (slower and
#: bigger than 3 there), level 9 3.0x for 0.89x. At 3 compression is a small part of a
#: batch's cost; the importer gunzips each file whole, so any level imports the same rows.
GZIP_LEVEL = 3


def _gzip(data: bytes) -> bytes:
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, compresslevel=GZIP_LEVEL) as gz:
        gz.write(data)
    return buffer.getvalue()


def _batches(keys: list[tuple[str, int]], size: int) -> Iterable[tuple[str, int, list[int], int]]:
    """(dictionary, batch number, features, files each kind may use in this batch)."""
    by_dictionary: dict[str, list[int]] = {}
    for dictionary_id, feature in keys:
        by_dictionary.setdefault(dictionary_id, []).append(feature)
    for dictionary_id, features in by_dictionary.items():
        per_batch = listing.batch_size(len(features), size)  # <= LIST_LIMIT feature files
        most = listing.files_per_batch(math.ceil(len(features) / per_batch))
        for n, start in enumerate(range(0, len(features), per_batch)):
            yield dictionary_id, n, features[start:start + per_batch], most


def _source(data: BrowserData, dictionary_id: str, creator_id: str,
            visibility: str) -> tuple[rows.Source, dict, dict]:
    dictionary = data._dicts("SELECT * FROM dictionaries WHERE dictionary_id = ?", [dictionary_id])[0]
    model = data._dicts("SELECT * FROM models WHERE model_id = ?", [dictionary["model_id"]])
    return rows.Source.of(dictionary, creator_id, visibility), dictionary, (model[0] if model else {})


def write(data: BrowserData, staging: Staging, keys: list[tuple[str, int]], batch_size: int | None = None,
          creator_id: str = rows.DEFAULT_CREATOR_ID, visibility: str = "PUBLIC",
          embedder: Embedder | None = None, processes: int | None = None) -> int:
    """Write every feature in ``keys``; returns the number of feature batch files.

    No folder gets more files than the importer lists (:mod:`.listing`). With
    ``embedder`` every explanation row carries its embedding (written in this process);
    otherwise a large export spreads its batches over worker processes
    (:mod:`featurelens.export.workers`; ``processes`` overrides how many)."""
    batch_size = BATCH_SIZE if batch_size is None else batch_size
    files = 0
    sources: dict[str, tuple[rows.Source, dict, dict]] = {}
    n_processes = 1 if embedder is not None else workers.processes_for(len(keys), processes)
    with progress(len(keys), desc="export neuronpedia", unit="feature") as bar:
        def tasks() -> Iterator[tuple[Any, ...]]:
            nonlocal files
            for dictionary_id, n, features, most in _batches(keys, batch_size):
                if dictionary_id not in sources:
                    sources[dictionary_id] = _source(data, dictionary_id, creator_id, visibility)
                src, dictionary, _ = sources[dictionary_id]
                folder = f"{VERSION}/{src.model_id}/{src.source_id}"
                name = f"batch-{n:05d}.jsonl.gz"
                files += 1
                if staging.done(f"{folder}/features/{name}"):
                    bar.update(len(features))
                else:
                    yield staging, src, dictionary, features, folder, name, most

        if n_processes > 1:
            workers.run(data.path, _batch_in_worker, tasks(), n_processes, bar.update)
        else:
            for task in tasks():
                _write_batch(data, *task, embedder)
                bar.update(len(task[3]))
    config: dict[str, dict[str, dict[str, Any]]] = {}
    for dictionary_id, (src, dictionary, model) in sources.items():
        source_config = _write_metadata(data, staging, src, dictionary, model,
                                        [f for d, f in keys if d == dictionary_id])
        for table, lines in source_config.items():
            config.setdefault(table, {}).update({line["name"]: line for line in lines})
    for table, by_name in config.items():  # one file each, empty or not: the importer needs all five
        staging.write_bytes(f"{VERSION}/config/{table}.jsonl",
                            _jsonl([by_name[name] for name in sorted(by_name)]))
    return files


def _batch_in_worker(staging: Staging, src: rows.Source, dictionary: dict[str, Any], features: list[int],
                     folder: str, name: str, most: int) -> int:
    """:func:`_write_batch` in a worker process (:mod:`featurelens.export.workers`)."""
    _write_batch(workers.store(), staging, src, dictionary, features, folder, name, most, None)
    return len(features)


def _write_batch(data: BrowserData, staging: Staging, src: rows.Source, dictionary: dict[str, Any],
                 features: list[int], folder: str, name: str, most: int, embedder: Embedder | None) -> None:
    did = dictionary["dictionary_id"]
    wanted = sorted(set(features))
    stats = data.feature_stats(did, wanted)
    activations = activation_lines.lines(activation_lines.read(data, src, did, wanted, ALL_QUANTILE), src, stats)
    found = {int(s["feature"]) for s in stats}
    described = [e for e in data.explanations_of(did, wanted) if int(e["feature"]) in found]
    vectors = None
    if embedder is not None:
        texts = sorted({e["text"] for e in described})
        vectors = dict(zip(texts, embedder(texts), strict=True)) if texts else {}
    neurons = [rows.neuron_row(src, s, dictionary.get("hookpoint")) for s in stats]
    explanations, scores = rows.explanation_rows_of(src, described, vectors)
    # An empty file would stop the importer (it parses the first line for the columns);
    # a large batch is cut into several files the importer can hold (neuronpedia_json),
    # at most ``most`` of them so the folder stays within one listing (neuronpedia_listing).
    stem = name.removesuffix(".jsonl.gz")
    for kind, pieces in (
            ("activations", listing.text_pieces(activations, most, what=f"{folder}/activations/{name}")),
            ("explanations", listing.pieces(explanations, most, what=f"{folder}/explanations/{name}")),
            ("explanation_scores", listing.pieces(scores, most, what=f"{folder}/explanation_scores/{name}"))):
        for part, data in enumerate(pieces):
            piece = name if part == 0 else f"{stem}-{part:03d}.jsonl.gz"
            staging.write_bytes(f"{folder}/{kind}/{piece}", _gzip(data))
    staging.write_bytes(f"{folder}/features/{name}", _gzip(_jsonl(neurons)))


def _write_metadata(data: BrowserData, staging: Staging, src: rows.Source, dictionary: dict[str, Any],
                    model: dict[str, Any], features: list[int]) -> dict[str, list[dict[str, Any]]]:
    """The source's four metadata files and ``replace.sql``; returns its config rows."""
    folder = f"{VERSION}/{src.model_id}/{src.source_id}"
    staging.write_bytes(f"{folder}/replace.sql", rows.replace_sql(src).encode())
    corpus = data._dicts("SELECT any_value(corpus_id) AS c FROM features WHERE dictionary_id = ?",
                         [dictionary["dictionary_id"]])
    for table, row in rows.metadata_rows(src, dictionary, model, corpus[0]["c"] if corpus else None).items():
        staging.write_bytes(f"{folder}/{table}.jsonl", _jsonl([row]))
    # A semi-join on the exported features: linear in the rows, where list_contains over a
    # list of every exported feature would be rows x features (10^12 at a million).
    params = [dictionary["dictionary_id"], features]
    explained = data._dicts("SELECT DISTINCT explainer, llm FROM explanations WHERE dictionary_id = ? "
                            "AND feature IN (SELECT unnest(?::INTEGER[])) ORDER BY ALL", params)
    scored = data._dicts("SELECT DISTINCT scorer, llm FROM scores WHERE dictionary_id = ? "
                         "AND feature IN (SELECT unnest(?::INTEGER[])) AND status = 'ok' "
                         "AND score IS NOT NULL ORDER BY ALL", params)
    return rows.config_rows(
        [{"typeName": rows.explanation_type(e["explainer"]),
          "explanationModelName": rows.model_name(e["llm"], e["explainer"])} for e in explained],
        [{"explanationScoreTypeName": rows.score_type(s["scorer"]),
          "explanationScoreModelName": rows.model_name(s["llm"], s["scorer"])} for s in scored], src.creator_id)
