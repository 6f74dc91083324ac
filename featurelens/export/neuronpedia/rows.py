"""Rows of Neuronpedia's database tables, built from one feature store's records.

Neuronpedia's admin import (``apps/webapp/app/api/admin/import/route.ts`` and
``lib/db/import.ts`` in its public repository) creates ``SourceRelease``, ``Model``,
``SourceSet`` and ``Source`` rows with Prisma from one JSON object per line, then
bulk-inserts ``Neuron``, ``Activation`` and ``Explanation`` rows with PostgreSQL's
``jsonb_to_recordset``: every key must be a column name of ``schema.prisma``, the
columns are read from the *first* line of each file (so every line has the same keys),
and every NOT NULL column without a database default must be filled, including the
ids Prisma would otherwise generate client-side (``@default(cuid())``).

Everything here is a pure function of the store's records, so ids are deterministic
and a re-import is answered by the importer's ``ON CONFLICT DO NOTHING``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from featurelens.export.neuronpedia.json_lines import finite

#: Neuronpedia's default creator (``DEFAULT_CREATOR_USER_ID`` in its ``lib/env.ts``):
#: the user every row of a local instance's public datasets belongs to.
DEFAULT_CREATOR_ID = "clkht01d40000jv08hvalcvly"

#: Longest name :func:`slug` writes (a source id adds the layer and a dash to it).
MAX_NAME = 100

#: featurelens explainers that Neuronpedia already has as explanation types.
EXPLANATION_TYPES = {"token-activations": "oai_token-act-pair", "highlighted": "eleuther_acts_top20"}


def slug(text: str) -> str:
    """Lower-case letters, digits and dashes (Neuronpedia's model and source-set names);
    a short hash keeps two different inputs apart when characters had to be replaced."""
    clean = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"
    if clean != text.lower() or len(clean) > MAX_NAME:
        # Model ids are at most 128 characters (schema.prisma's zod rule); stay well under.
        clean = f"{clean[:MAX_NAME - 7].rstrip('-')}-{hashlib.sha1(text.encode()).hexdigest()[:6]}"
    return clean


def row_id(*parts: Any) -> str:
    """A deterministic 25-character id in the shape of a cuid (letter first)."""
    return "c" + hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:24]


def _num(value: Any, default: float = 0.0) -> float:
    """A finite number for a Float column (JSON has no NaN or Infinity: see neuronpedia_json)."""
    return round(finite(value, default), 4)


def layer_number(hookpoint: str | None) -> str:
    """The layer a hookpoint reads (first integer in its name), ``0`` when none."""
    match = re.search(r"\d+", str(hookpoint or ""))
    return match.group(0) if match else "0"


@dataclass(frozen=True)
class Source:
    """Where one dictionary goes in Neuronpedia: model, source set, source (= layer id)."""

    model_id: str
    set_name: str
    source_id: str
    creator_id: str

    @classmethod
    def of(cls, dictionary: dict[str, Any], creator_id: str = DEFAULT_CREATOR_ID) -> "Source":
        set_name = slug(str(dictionary["dictionary_id"]))
        layer = layer_number(dictionary.get("hookpoint"))
        return cls(slug(str(dictionary.get("model_id") or "model")), set_name, f"{layer}-{set_name}", creator_id)


def metadata_rows(src: Source, dictionary: dict[str, Any], model: dict[str, Any],
                  dataset: str | None) -> dict[str, dict[str, Any]]:
    """``release``, ``model``, ``sourceset`` and ``source`` rows (one each)."""
    release = f"featurelens-{src.model_id}-{src.set_name}"
    description = (f"{dictionary.get('architecture')} dictionary on {dictionary.get('hookpoint')} "
                   f"of {dictionary.get('model_id')}, {dictionary.get('d_sae')} features (featurelens)")
    return {
        "release": {"name": release, "description": description, "creatorName": "featurelens",
                    "creatorId": src.creator_id, "urls": [], "visibility": "PRIVATE"},
        "model": {"id": src.model_id, "displayName": str(dictionary.get("model_id") or src.model_id),
                  "displayNameShort": src.model_id, "creatorId": src.creator_id,
                  "layers": int(model.get("n_layers") or 0), "neuronsPerLayer": int(model.get("d_model") or 0),
                  "owner": "featurelens", "visibility": "PRIVATE"},
        "sourceset": {"modelId": src.model_id, "name": src.set_name, "description": description,
                      "creatorName": "featurelens", "creatorId": src.creator_id, "urls": [],
                      "releaseName": release, "visibility": "PRIVATE"},
        "source": {"id": src.source_id, "modelId": src.model_id, "setName": src.set_name,
                   "creatorId": src.creator_id, "hasDashboards": True, "visibility": "PRIVATE",
                   "dataset": dataset, "notes": f"featurelens dictionary {dictionary['dictionary_id']}"},
    }


def neuron_row(src: Source, stats: dict[str, Any], hookpoint: str | None) -> dict[str, Any]:
    """One ``Neuron`` row: the feature's statistics, logit effects and histogram."""
    edges, counts = stats.get("histogram_edges") or [], stats.get("histogram_counts") or []
    return {
        "modelId": src.model_id, "layer": src.source_id, "index": str(int(stats["feature"])),
        "sourceSetName": src.set_name, "creatorId": src.creator_id, "hookName": hookpoint,
        "maxActApprox": _num(stats.get("max_activation"), 0.0),
        "frac_nonzero": _num(stats.get("density"), 0.0),
        "pos_str": list(stats.get("top_logits") or []),
        "pos_values": [_num(v, 0.0) for v in stats.get("top_logit_values") or []],
        "neg_str": list(stats.get("bottom_logits") or []),
        "neg_values": [_num(v, 0.0) for v in stats.get("bottom_logit_values") or []],
        "freq_hist_data_bar_values": [_num((finite(a) + finite(b)) / 2) for a, b in zip(edges, edges[1:], strict=False)],
        "freq_hist_data_bar_heights": [_num(c) for c in counts],
    }


def activation_rows(src: Source, feature: int, examples: dict[str, list[dict[str, Any]]],
                    max_activation: float | None) -> list[dict[str, Any]]:
    """``Activation`` rows with their bin fields as SAEDashboard writes them: top windows
    ``binMin = -1``, ``binMax`` = the feature's max, ``binContains = -1``; quantile windows
    the activation range of their bin and the share of sampled firing windows in it."""
    quantile = examples.get("quantile", [])
    bins: dict[int, list[float]] = {}
    for row in quantile:
        bins.setdefault(int(row["quantile"] or 0), []).append(finite(row["max_activation"]))
    out = []
    for kind in ("top", "quantile"):
        for row in examples.get(kind, []):
            values = [_num(v) for v in row["activations"]]
            if kind == "top":
                low, high, share = -1.0, _num(max_activation, 0.0), -1.0
            else:
                members = bins[int(row["quantile"] or 0)]
                low, high, share = round(min(members), 4), round(max(members), 4), round(len(members) / len(quantile), 4)
            out.append({
                "id": row_id("activation", src.model_id, src.source_id, feature, kind, row["rank"]),
                "modelId": src.model_id, "layer": src.source_id, "index": str(feature),
                "tokens": list(row["token_strs"]), "values": values,
                "maxValue": _num(row["max_activation"], 0.0), "maxValueTokenIndex": int(row["max_position"]),
                "minValue": min(values, default=0.0),
                "dataIndex": str(row["sequence_id"]), "dataSource": row.get("document"),
                "creatorId": src.creator_id, "binMin": low, "binMax": high, "binContains": share,
            })
    return out


def explanation_rows(src: Source, feature: int, explanations: list[dict[str, Any]]
                     ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``Explanation`` rows and the ``ExplanationScore`` rows of their defined scores."""
    rows, scores = [], []
    for e in explanations:
        explanation_id = row_id("explanation", e["explanation_id"])
        rows.append({
            "id": explanation_id, "modelId": src.model_id, "layer": src.source_id, "index": str(feature),
            "description": e["text"], "authorId": src.creator_id,
            "typeName": explanation_type(e["explainer"]), "explanationModelName": model_name(e["llm"]),
            "notes": f"featurelens explainer {e['explainer']} with {e['llm']}",
        })
        for s in e["scores"]:
            if s["score"] is None or not math.isfinite(float(s["score"])) or s["status"] != "ok":
                continue  # ExplanationScore.value is NOT NULL: an undefined score has no place
            scores.append({
                "id": row_id("score", e["explanation_id"], s["scorer"], s["llm"]),
                "initiatedByUserId": src.creator_id, "value": round(float(s["score"]), 6),
                "explanationId": explanation_id, "explanationScoreTypeName": score_type(s["scorer"]),
                "explanationScoreModelName": model_name(s["llm"]),
                "jsonDetails": json.dumps({"scorer": s["scorer"], "llm": s["llm"],
                                           "n_parse_failures": int(s.get("n_parse_failures") or 0)}),
            })
    return rows, scores


def explanation_type(explainer: str) -> str:
    """Neuronpedia's explanation type for a featurelens explainer (its own name for the
    two it has, ``featurelens_<name>`` otherwise; see :func:`config_rows`)."""
    return EXPLANATION_TYPES.get(explainer, f"featurelens_{slug(explainer)}")


def score_type(scorer: str) -> str:
    return f"featurelens_{slug(scorer)}"


def model_name(llm: str) -> str:
    """``provider:model`` -> ``model`` (Neuronpedia names models without a provider)."""
    return llm.split(":", 1)[1] if ":" in llm else llm


def config_rows(explanations: list[dict[str, Any]], scores: list[dict[str, Any]],
                creator_id: str) -> dict[str, list[dict[str, Any]]]:
    """The explanation types, explanation models, score types and score models the
    rows refer to, as rows of their tables: Neuronpedia's importer upserts these
    from its global config, so names it does not have must be added from here."""
    types = sorted({e["typeName"] for e in explanations} - set(EXPLANATION_TYPES.values()))
    models = sorted({e["explanationModelName"] for e in explanations})
    score_types = sorted({s["explanationScoreTypeName"] for s in scores})
    score_models = sorted({s["explanationScoreModelName"] for s in scores})
    return {
        "explanation_type": [{"name": t, "displayName": t, "description": f"featurelens explainer ({t})",
                              "creatorName": "featurelens", "creatorId": creator_id} for t in types],
        "explanation_model_type": [{"name": m, "displayName": m, "description": m, "creatorName": "featurelens"}
                                   for m in models],
        "explanation_score_type": [{"name": t, "displayName": t, "description": f"featurelens scorer ({t})",
                                    "creatorName": "featurelens", "creatorId": creator_id} for t in score_types],
        "explanation_score_model": [{"name": m, "displayName": m, "description": m, "creatorName": "featurelens"}
                                    for m in score_models],
    }
