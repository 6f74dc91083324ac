"""Neuronpedia-compatible feature JSON.

Each feature becomes one object shaped like Neuronpedia's feature records (its
``/api/feature/<model>/<source>/<index>`` answer and its dataset exports):
``modelId``, ``layer`` (the source id, ``<layer>-<dictionary>``), ``index``,
``maxActApprox``, ``frac_nonzero``, ``pos_str``/``pos_values`` and
``neg_str``/``neg_values`` (logit effects), ``freq_hist_data_bar_values``/``_heights``
(the activation histogram: bin centres and counts), ``activations`` (top examples with
``binMin = -1``, then quantile examples: ``tokens``, ``values``, ``maxValue``,
``maxValueTokenIndex``, ``minValue``) and ``explanations`` (``description``,
``typeName`` = explainer, ``explanationModelName`` = LLM, ``scores`` with ``value``,
``explanationScoreTypeName``, ``explanationScoreModelName``).

Features are written as gzipped JSON Lines, ``<dictionary>/batch-<n>.jsonl.gz`` with
``batch_size`` features each (Neuronpedia's importers read batches); every batch is
an atomic file, so an interrupted export resumes at the first missing batch.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import re
from typing import Any, Iterable

from featurelens.browser.links import file_slug
from featurelens.browser.queries import BrowserData, FeatureData
from featurelens.core.progress import progress
from featurelens.export.staging import Staging


def source_id(dictionary: dict[str, Any]) -> str:
    """Neuronpedia's source id: ``<layer>-<dictionary id>`` (layer from the hookpoint)."""
    match = re.search(r"\d+", str(dictionary.get("hookpoint") or ""))
    layer = match.group(0) if match else "0"
    return f"{layer}-{file_slug(str(dictionary['dictionary_id'])).lower()}"


def _num(value: Any) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return round(float(value), 4)


def _activation(row: dict[str, Any]) -> dict[str, Any]:
    values = [round(float(v), 4) for v in row["activations"]]
    top = row["kind"] == "top"
    return {
        "tokens": list(row["token_strs"]), "values": values,
        "maxValue": _num(row["max_activation"]), "maxValueTokenIndex": int(row["max_position"]),
        "minValue": min(values, default=0.0),
        "binMin": -1 if top else None, "binMax": None, "binContains": None,
        "quantile": row["quantile"],
    }


def feature_json(data: FeatureData) -> dict[str, Any]:
    """One feature as a Neuronpedia-style object."""
    s = data.stats
    edges, counts = s.get("histogram_edges") or [], s.get("histogram_counts") or []
    centres = [round((a + b) / 2, 4) for a, b in zip(edges, edges[1:])]
    explanations = [{
        "description": e["text"], "typeName": e["explainer"], "explanationModelName": e["llm"],
        "scores": [{"value": _num(sc["score"]), "explanationScoreTypeName": sc["scorer"],
                    "explanationScoreModelName": sc["llm"], "status": sc["status"]}
                   for sc in e["scores"]],
    } for e in data.explanations]
    return {
        "modelId": data.dictionary.get("model_id"),
        "layer": source_id(data.dictionary or {"dictionary_id": s["dictionary_id"]}),
        "index": str(int(s["feature"])),
        "dictionaryId": s["dictionary_id"],
        "hookName": data.dictionary.get("hookpoint"),
        "maxActApprox": _num(s["max_activation"]) or 0.0,
        "frac_nonzero": _num(s["density"]) or 0.0,
        "pos_str": list(s.get("top_logits") or []),
        "pos_values": [_num(v) for v in s.get("top_logit_values") or []],
        "neg_str": list(s.get("bottom_logits") or []),
        "neg_values": [_num(v) for v in s.get("bottom_logit_values") or []],
        "freq_hist_data_bar_values": centres,
        "freq_hist_data_bar_heights": [int(c) for c in counts],
        "activations": [_activation(r) for r in data.examples.get("top", []) + data.examples.get("quantile", [])],
        "explanations": explanations,
    }


def _batches(keys: list[tuple[str, int]], size: int) -> Iterable[tuple[str, int, list[int]]]:
    by_dictionary: dict[str, list[int]] = {}
    for dictionary_id, feature in keys:
        by_dictionary.setdefault(dictionary_id, []).append(feature)
    for dictionary_id, features in by_dictionary.items():
        for n, start in enumerate(range(0, len(features), size)):
            yield dictionary_id, n, features[start:start + size]


def write(data: BrowserData, staging: Staging, keys: list[tuple[str, int]], batch_size: int = 1000) -> int:
    """Write every feature in ``keys``; returns the number of batch files."""
    files = 0
    with progress(len(keys), desc="export neuronpedia", unit="feature") as bar:
        for dictionary_id, n, features in _batches(keys, batch_size):
            name = f"{file_slug(dictionary_id)}/batch-{n:05d}.jsonl.gz"
            files += 1
            if not staging.done(name):
                buffer = io.BytesIO()
                with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz:
                    for record in data.feature_batch(dictionary_id, features):
                        gz.write(json.dumps(feature_json(record), ensure_ascii=False).encode() + b"\n")
                staging.write_bytes(name, buffer.getvalue())
            bar.update(len(features))
    return files
