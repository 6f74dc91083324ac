"""A validator for Neuronpedia admin-import folders, built from Neuronpedia's schema.

The column facts below are transcribed field by field from ``apps/webapp/prisma/schema.prisma``
in the public neuronpedia repository (hijohnnylin/neuronpedia, commit 008d5040ab97):
per table, each scalar column's Prisma type, whether it is optional (``?``) and whether
the database fills it (``@default(...)`` other than ``cuid()``; ``@updatedAt`` alone is
filled by the Prisma client, which the bulk importer bypasses). Relation fields are
left out: they are not columns. The checks mirror ``lib/db/import.ts``: columns are
taken from a file's first line (so every line must carry the same keys), a key that is
not a column is dropped silently (so it is an error here), and a NOT NULL column with
no database default must be present and not null. ``Explanation.embedding`` is
``Unsupported("vector(256)")``: a list of 256 numbers. Config comes from ``v1/config/``
of the bucket, five files that must all exist (``importConfigFromS3``); the source
folder is ``v1/<modelId>/<sourceId>`` and a source id's layer part is a number or ``e``
(``getLayerNumFromSource`` in lib/utils/source.ts).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

# name: (type, optional, db_default)
Col = tuple[str, bool, bool]

TABLES: dict[str, dict[str, Col]] = {
    "SourceRelease": {
        "name": ("String", False, False), "visibility": ("Visibility", False, True),
        "isNewUi": ("Boolean", False, True), "featured": ("Boolean", False, True),
        "description": ("String", False, False), "descriptionShort": ("String", True, False),
        "urls": ("String[]", False, False), "creatorEmail": ("String", True, False),
        "creatorName": ("String", False, False), "creatorNameShort": ("String", True, False),
        "creatorId": ("String", False, False), "defaultSourceSetName": ("String", True, False),
        "defaultSourceId": ("String", True, False), "defaultUmapSourceIds": ("String[]", False, True),
        "createdAt": ("DateTime", False, True),
    },
    "Model": {
        "id": ("String", False, False), "displayNameShort": ("String", False, True),
        "displayName": ("String", False, True), "creatorId": ("String", False, False),
        "tlensId": ("String", True, False), "openRouterId": ("String", True, False),
        "dimension": ("Int", True, False), "thinking": ("Boolean", False, True),
        "visibility": ("Visibility", False, True), "defaultSourceSetName": ("String", True, False),
        "defaultSourceId": ("String", True, False), "defaultGraphSourceSetName": ("String", True, False),
        "inferenceEnabled": ("Boolean", False, True), "instruct": ("Boolean", False, True),
        "layers": ("Int", False, False), "neuronsPerLayer": ("Int", False, False),
        "createdAt": ("DateTime", False, True), "owner": ("String", False, False),
        "updatedAt": ("DateTime", False, True), "website": ("String", True, False),
    },
    "SourceSet": {
        "modelId": ("String", False, False), "name": ("String", False, False),
        "hasDashboards": ("Boolean", False, True), "allowInferenceSearch": ("Boolean", False, True),
        "visibility": ("Visibility", False, True), "description": ("String", False, False),
        "type": ("String", False, True), "creatorName": ("String", False, False),
        "urls": ("String[]", False, False), "creatorEmail": ("String", True, False),
        "creatorId": ("String", False, False), "releaseName": ("String", True, False),
        "hasGraphs": ("Boolean", False, True), "graphEnabled": ("Boolean", False, True),
        "similarityMatrixEnabled": ("Boolean", False, True), "defaultOfModelId": ("String", True, False),
        "defaultGraphModelId": ("String", True, False), "defaultRange": ("Int", False, True),
        "defaultShowBreaks": ("Boolean", False, True), "showDfa": ("Boolean", False, True),
        "showCorrelated": ("Boolean", False, True), "showHeadAttribution": ("Boolean", False, True),
        "showUmap": ("Boolean", False, True), "createdAt": ("DateTime", False, True),
    },
    "Source": {
        "id": ("String", False, False), "modelId": ("String", False, False),
        "hasDashboards": ("Boolean", False, True), "inferenceEnabled": ("Boolean", False, True),
        "saelensConfig": ("Json", True, False), "saelensRelease": ("String", True, False),
        "saelensSaeId": ("String", True, False), "hfRepoId": ("String", True, False),
        "hfFolderId": ("String", True, False), "visibility": ("Visibility", False, True),
        "defaultOfModelId": ("String", True, False), "setName": ("String", False, False),
        "creatorId": ("String", False, False), "hasUmap": ("Boolean", False, True),
        "hasUmapLogSparsity": ("Boolean", False, True), "hasUmapClusters": ("Boolean", False, True),
        "num_prompts": ("Int", True, False), "num_tokens_in_prompt": ("Int", True, False),
        "dataset": ("String", True, False), "notes": ("String", True, False),
        "cosSimMatchModelId": ("String", True, False), "cosSimMatchSourceId": ("String", True, False),
        "createdAt": ("DateTime", False, True),
    },
    "Neuron": {
        "modelId": ("String", False, False), "layer": ("String", False, False),
        "index": ("String", False, False), "sourceSetName": ("String", True, False),
        "creatorId": ("String", True, False), "createdAt": ("DateTime", False, True),
        "maxActApprox": ("Float", True, True), "hasVector": ("Boolean", False, True),
        "vector": ("Float[]", False, True), "vectorLabel": ("String", True, False),
        "vectorDefaultSteerStrength": ("Float", True, True), "hookName": ("String", True, False),
        "topkCosSimIndices": ("Int[]", False, True), "topkCosSimValues": ("Float[]", False, True),
        **{name: ("Int[]" if name.endswith("indices") else "Float[]", False, True) for name in (
            "neuron_alignment_indices", "neuron_alignment_values", "neuron_alignment_l1",
            "correlated_neurons_indices", "correlated_neurons_pearson", "correlated_neurons_l1",
            "correlated_features_indices", "correlated_features_pearson", "correlated_features_l1",
            "neg_values", "pos_values", "freq_hist_data_bar_heights", "freq_hist_data_bar_values",
            "logits_hist_data_bar_heights", "logits_hist_data_bar_values", "decoder_weights_dist")},
        "neg_str": ("String[]", False, True), "pos_str": ("String[]", False, True),
        "frac_nonzero": ("Float", False, True),
        "umap_cluster": ("Int", True, False), "umap_log_feature_sparsity": ("Float", True, False),
        "umap_x": ("Float", True, False), "umap_y": ("Float", True, False),
    },
    "Activation": {
        "id": ("String", False, False), "tokens": ("String[]", False, False),
        "dataIndex": ("String", True, False), "index": ("String", False, False),
        "layer": ("String", False, False), "modelId": ("String", False, False),
        "dataSource": ("String", True, False), "maxValue": ("Float", False, False),
        "maxValueTokenIndex": ("Int", False, False), "minValue": ("Float", False, False),
        "values": ("Float[]", False, False), "dfaValues": ("Float[]", False, True),
        "dfaTargetIndex": ("Int", True, False), "dfaMaxValue": ("Float", True, False),
        "zQIndices": ("Int[]", False, True), "zKIndices": ("Int[]", False, True),
        "zValues": ("Float[]", False, True), "creatorId": ("String", False, False),
        "createdAt": ("DateTime", False, True), "lossValues": ("Float[]", False, True),
        "logitContributions": ("String", True, False), "binMin": ("Float", True, False),
        "binMax": ("Float", True, False), "binContains": ("Float", True, False),
        "qualifyingTokenIndex": ("Int", True, False),
    },
    "Explanation": {
        "id": ("String", False, False), "modelId": ("String", False, False),
        "layer": ("String", False, False), "index": ("String", False, False),
        "description": ("String", False, False), "authorId": ("String", False, False),
        "triggeredByUserId": ("String", True, False), "notes": ("String", True, False),
        "scoreV1": ("Float", False, True), "scoreV2": ("Float", True, False),
        "umap_x": ("Float", True, True), "umap_y": ("Float", True, True),
        "umap_cluster": ("Int", True, True), "umap_log_feature_sparsity": ("Float", True, True),
        "typeName": ("String", True, False), "explanationModelName": ("String", True, False),
        "createdAt": ("DateTime", False, True), "updatedAt": ("DateTime", False, True),
        "embedding": ("Vector256", True, False),
    },
    "ExplanationScore": {
        "id": ("String", False, False), "initiatedByUserId": ("String", False, False),
        "value": ("Float", False, False), "explanationId": ("String", False, False),
        "explanationScoreTypeName": ("String", False, False),
        "explanationScoreModelName": ("String", False, False),
        "jsonDetails": ("String", False, True), "createdAt": ("DateTime", False, True),
    },
    "ExplanationType": {
        "name": ("String", False, False), "displayName": ("String", False, False),
        "description": ("String", False, False), "featured": ("Boolean", False, True),
        "isAttention": ("Boolean", False, True), "explainerModelSettingsId": ("String", True, False),
        "settings": ("String", True, False), "url": ("String", True, False),
        "creatorName": ("String", False, False), "creatorId": ("String", False, False),
        "createdAt": ("DateTime", False, True), "updatedAt": ("DateTime", False, True),
    },
    "ExplanationModelType": {
        "name": ("String", False, False), "displayName": ("String", False, False),
        "description": ("String", False, False), "featured": ("Boolean", False, True),
        "openRouterModelId": ("String", True, False), "url": ("String", True, False),
        "creatorName": ("String", False, False), "createdAt": ("DateTime", False, True),
        "updatedAt": ("DateTime", False, True),
    },
    "ExplanationScoreType": {
        "name": ("String", False, False), "displayName": ("String", False, False),
        "description": ("String", False, False), "featured": ("Boolean", False, True),
        "isAttention": ("Boolean", False, True), "scoreDescription": ("String", True, False),
        "scorerModel": ("String", True, False), "settings": ("String", True, False),
        "url": ("String", True, False), "creatorName": ("String", False, False),
        "creatorId": ("String", False, False), "createdAt": ("DateTime", False, True),
        "updatedAt": ("DateTime", False, True),
    },
    "ExplanationScoreModel": {
        "name": ("String", False, False), "displayName": ("String", False, False),
        "description": ("String", False, False), "featured": ("Boolean", False, True),
        "openRouterModelId": ("String", True, False), "url": ("String", True, False),
        "creatorName": ("String", False, False), "createdAt": ("DateTime", False, True),
        "updatedAt": ("DateTime", False, True),
    },
}
TABLES["EvalType"] = {
    "name": ("String", False, False), "displayName": ("String", False, False),
    "description": ("String", False, False), "longerDescription": ("String", False, True),
    "outputSchema": ("Json", False, False), "featured": ("Boolean", False, True),
    "url": ("String", True, False), "createdAt": ("DateTime", False, True),
    "updatedAt": ("DateTime", False, True),
}
VISIBILITY = {"PUBLIC", "UNLISTED", "PRIVATE"}

#: What the admin import reads, and into which table (route.ts), plus the two extra folders.
FILES = {"release.jsonl": "SourceRelease", "model.jsonl": "Model", "sourceset.jsonl": "SourceSet",
         "source.jsonl": "Source", "features": "Neuron", "activations": "Activation",
         "explanations": "Explanation", "explanation_scores": "ExplanationScore"}

#: The five files ``importConfigFromS3`` reads from ``v1/config/`` (each must exist).
CONFIG_FILES = {"explanation_model_type.jsonl": "ExplanationModelType",
                "explanation_type.jsonl": "ExplanationType",
                "explanation_score_model.jsonl": "ExplanationScoreModel",
                "explanation_score_type.jsonl": "ExplanationScoreType",
                "eval_type.jsonl": "EvalType"}


def config_folder(source_folder: Path) -> Path:
    """``v1/config`` of the bucket a ``v1/<modelId>/<sourceId>`` folder lives in."""
    return source_folder.parent.parent / "config"


def _type_ok(kind: str, value: Any) -> bool:
    if value is None:
        return True
    if kind.endswith("[]"):
        return isinstance(value, list) and all(v is not None and _type_ok(kind[:-2], v) for v in value)
    return {
        "String": lambda v: isinstance(v, str), "Boolean": lambda v: isinstance(v, bool),
        "Int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "Float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "Visibility": lambda v: v in VISIBILITY, "Json": lambda v: True,
        "DateTime": lambda v: isinstance(v, str),
        "Vector256": lambda v: isinstance(v, list) and len(v) == 256 and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in v),
    }[kind](value)


def check_rows(table: str, lines: list[dict[str, Any]], where: str) -> list[str]:
    """Every problem with ``lines`` as rows of ``table`` (empty when they import)."""
    columns = TABLES[table]
    problems = []
    if not lines:
        return [f"{where}: empty file (the importer reads the columns from the first line)"]
    first = set(lines[0])
    for n, line in enumerate(lines):
        if set(line) != first:
            problems.append(f"{where}:{n + 1}: keys differ from the first line's: {sorted(set(line) ^ first)}")
        for key, value in line.items():
            if key not in columns:
                problems.append(f"{where}:{n + 1}: {key!r} is not a column of {table}")
            elif not _type_ok(columns[key][0], value):
                problems.append(f"{where}:{n + 1}: {key}={value!r:.60} is not a {columns[key][0]}")
        for key, (kind, optional, db_default) in columns.items():
            if not optional and not db_default and line.get(key) is None:
                problems.append(f"{where}:{n + 1}: NOT NULL column {table}.{key} is missing")
            if not optional and key in line and line[key] is None and not kind.endswith("[]"):
                problems.append(f"{where}:{n + 1}: NOT NULL column {table}.{key} is null")
    return problems


def _read(path: Path) -> list[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def load_source_folder(folder: Path) -> dict[str, list[dict[str, Any]]]:
    """Every table's rows in one ``v1/<modelId>/<sourceId>`` folder and the bucket's config."""
    out: dict[str, list[dict[str, Any]]] = {}
    places = [(folder / name, table) for name, table in FILES.items()]
    places += [(config_folder(folder) / name, table) for name, table in CONFIG_FILES.items()]
    for path, table in places:
        if path.is_dir():
            for batch in sorted(path.glob("*.jsonl.gz")):
                out.setdefault(table, []).extend(_read(batch))
        elif path.is_file():
            out.setdefault(table, []).extend(_read(path))
    return out


def validate(folder: Path, known_explanation_types: set[str] = frozenset()) -> list[str]:
    """Problems with one admin-import folder: columns, NOT NULLs, types, then keys across files."""
    problems: list[str] = []
    if folder.parent.parent.name != "v1":
        problems.append(f"{folder} is not v1/<modelId>/<sourceId> of a bucket")
    for name, table in FILES.items():
        path = folder / name
        files = sorted(path.glob("*.jsonl.gz")) if path.is_dir() else ([path] if path.is_file() else [])
        for f in files:
            problems += check_rows(table, _read(f), str(f.relative_to(folder)))
    for name, table in CONFIG_FILES.items():
        path = config_folder(folder) / name
        if not path.is_file():
            problems.append(f"v1/config/{name} is missing (the importer stops without it)")
        elif path.stat().st_size:  # an empty config file is read as no rows
            problems += check_rows(table, _read(path), f"v1/config/{name}")
    for required in ("release.jsonl", "model.jsonl", "sourceset.jsonl", "source.jsonl", "features"):
        if not (folder / required).exists():
            problems.append(f"{required} is missing")
    if problems:
        return problems
    t = load_source_folder(folder)
    model_id, source_id = folder.parent.name, folder.name
    models = {m["id"] for m in t["Model"]}
    sets = {(s["modelId"], s["name"]) for s in t["SourceSet"]}
    releases = {r["name"] for r in t["SourceRelease"]}
    sources = {(s["modelId"], s["id"]) for s in t["Source"]}
    neurons = {(n["modelId"], n["layer"], n["index"]) for n in t["Neuron"]}
    if model_id not in models or (model_id, source_id) not in sources:
        problems.append(f"folder {model_id}/{source_id} has no matching model.jsonl / source.jsonl row")
    for s in t["SourceSet"]:
        if s.get("releaseName") is not None and s["releaseName"] not in releases:
            problems.append(f"source set {s['name']} names a release that is not in release.jsonl")
    for s in t["Source"]:
        if (s["modelId"], s["setName"]) not in sets:
            problems.append(f"source {s['id']} has no source set {s['setName']}")
        layer = s["id"].split("-", 1)[0]
        if not s["id"].endswith("-" + s["setName"]) or not (layer.isdigit() or layer == "e"):
            problems.append(f"source id {s['id']} is not <layer>-<sourceSetName>")
    for n in t["Neuron"]:
        if (n["modelId"], n["layer"]) not in sources:
            problems.append(f"neuron {n['layer']}/{n['index']} has no source")
        if n.get("sourceSetName") is not None and (n["modelId"], n["sourceSetName"]) not in sets:
            problems.append(f"neuron {n['index']} names a missing source set")
    if len(neurons) != len(t["Neuron"]):
        problems.append("duplicate (modelId, layer, index) in features/")
    for table in ("Activation", "Explanation"):
        rows = t.get(table, [])
        if len({r["id"] for r in rows}) != len(rows):
            problems.append(f"duplicate {table}.id")
        for r in rows:
            if (r["modelId"], r["layer"], r["index"]) not in neurons:
                problems.append(f"{table} {r['id']} points at a neuron not in features/")
    types = known_explanation_types | {r["name"] for r in t.get("ExplanationType", [])}
    llms = {r["name"] for r in t.get("ExplanationModelType", [])}
    for e in t.get("Explanation", []):
        if e.get("typeName") is not None and e["typeName"] not in types:
            problems.append(f"explanation type {e['typeName']!r} neither exists in Neuronpedia nor in config/")
        if e.get("explanationModelName") is not None and e["explanationModelName"] not in llms:
            problems.append(f"explanation model {e['explanationModelName']!r} is not in config/")
    explanation_ids = {e["id"] for e in t.get("Explanation", [])}
    score_types = {r["name"] for r in t.get("ExplanationScoreType", [])}
    score_models = {r["name"] for r in t.get("ExplanationScoreModel", [])}
    for s in t.get("ExplanationScore", []):
        if s["explanationId"] not in explanation_ids:
            problems.append(f"score {s['id']} points at a missing explanation")
        if s["explanationScoreTypeName"] not in score_types or s["explanationScoreModelName"] not in score_models:
            problems.append(f"score {s['id']} names a type or model that is not in config/")
    return problems
