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
and importing the same export twice is answered by the importer's ``ON CONFLICT DO
NOTHING``. That same rule means an import never replaces rows: after a re-extraction the
source's old rows must go first (``replace.sql``, :func:`replace_sql`).

Rows are ``PUBLIC`` unless asked otherwise: Neuronpedia lists a model, source set or
source only when it is public or belongs to the signed-in user, and imported rows belong
to the creator id, so private rows would be invisible to everyone on the instance.

Quantile examples carry SAEDashboard's bins (:func:`quantile_intervals`): ``n`` equal-width
intervals from 0 to the feature's max, each with the fraction of all the feature's
activating tokens that fall in it, so Neuronpedia's "Interval binMin - binMax (Contains
x%)" means what it says.
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

#: What those types are, for ``explanation_type.jsonl`` (the importer needs every type a row names).
KNOWN_TYPE_DESCRIPTIONS = {
    "oai_token-act-pair": "Explanations from token and activation pairs (OpenAI automated interpretability)",
    "eleuther_acts_top20": "Explanations from highlighted top activations (EleutherAI delphi)",
}

#: Neuronpedia's row visibilities (``enum Visibility`` in schema.prisma).
VISIBILITIES = ("PUBLIC", "UNLISTED", "PRIVATE")

#: Equal-width activation intervals quantile examples are grouped in (SAEDashboard's default).
N_INTERVALS = 10

#: The layer part of a source id for a hookpoint before the first block (token embeddings).
EMBED_LAYER = "e"

#: Scorers that use a model of their own rather than an LLM, and its name.
OWN_MODELS = {"embedding": "all-minilm-l6-v2"}

#: The provider of work done without an LLM (featurelens.llm.offline.OFFLINE_LLM's provider).
OFFLINE_PROVIDER = "offline"


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


def _values(activations: list[float]) -> list[float]:
    """:func:`_num` of every activation of a window; the usual all-finite window (mostly
    zeros) takes one pass at C speed for the check, not three calls a value."""
    try:
        if math.isfinite(math.fsum(activations)):
            return [round(v, 4) if v else 0.0 for v in activations]
    except (OverflowError, TypeError, ValueError):  # inf, -inf + inf, None: value by value
        pass
    return [_num(v) for v in activations]


def layer_number(hookpoint: str | None) -> str:
    """The layer a hookpoint reads (first integer in its name); ``e`` for the token
    embeddings (``hook_embed``, ``embed_tokens``: Neuronpedia's name for that layer), ``0``
    when the name holds no number."""
    text = str(hookpoint or "")
    if "embed" in text.lower() and not re.search(r"\d", text):
        return EMBED_LAYER
    match = re.search(r"\d+", text)
    return match.group(0) if match else "0"


@dataclass(frozen=True)
class Source:
    """Where one dictionary goes in Neuronpedia: model, source set, source (= layer id)."""

    model_id: str
    set_name: str
    source_id: str
    creator_id: str
    visibility: str = "PUBLIC"

    @classmethod
    def of(cls, dictionary: dict[str, Any], creator_id: str = DEFAULT_CREATOR_ID,
           visibility: str = "PUBLIC") -> "Source":
        if visibility not in VISIBILITIES:
            raise ValueError(f"visibility must be one of {', '.join(VISIBILITIES)}, not {visibility!r}")
        set_name = slug(str(dictionary["dictionary_id"]))
        layer = layer_number(dictionary.get("hookpoint"))
        return cls(slug(str(dictionary.get("model_id") or "model")), set_name, f"{layer}-{set_name}",
                   creator_id, visibility)


def metadata_rows(src: Source, dictionary: dict[str, Any], model: dict[str, Any],
                  dataset: str | None) -> dict[str, dict[str, Any]]:
    """``release``, ``model``, ``sourceset`` and ``source`` rows (one each)."""
    release = f"featurelens-{src.model_id}-{src.set_name}"
    description = (f"{dictionary.get('architecture')} dictionary on {dictionary.get('hookpoint')} "
                   f"of {dictionary.get('model_id')}, {dictionary.get('d_sae')} features (featurelens)")
    return {
        "release": {"name": release, "description": description, "creatorName": "featurelens",
                    "creatorId": src.creator_id, "urls": [], "visibility": src.visibility},
        "model": {"id": src.model_id, "displayName": str(dictionary.get("model_id") or src.model_id),
                  "displayNameShort": src.model_id, "creatorId": src.creator_id,
                  "layers": int(model.get("n_layers") or 0), "neuronsPerLayer": int(model.get("d_model") or 0),
                  "owner": "featurelens", "visibility": src.visibility},
        "sourceset": {"modelId": src.model_id, "name": src.set_name, "description": description,
                      "creatorName": "featurelens", "creatorId": src.creator_id, "urls": [],
                      "releaseName": release, "visibility": src.visibility},
        "source": {"id": src.source_id, "modelId": src.model_id, "setName": src.set_name,
                   "creatorId": src.creator_id, "hasDashboards": True, "visibility": src.visibility,
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


def histogram_share(edges: list[float], counts: list[int], low: float, high: float) -> float:
    """The fraction of the histogram's tokens with a value in ``[low, high)``, counting a
    histogram bin's tokens as spread evenly over the bin (its bins are about 7.5 % wide)."""
    return _share(_bins(edges, counts), float(sum(counts)), edges, low, high)


def _bins(edges: list[float], counts: list[int]) -> list[tuple[float, float, int]]:
    """``(low edge, high edge, count)`` of the histogram's bins that hold tokens."""
    return [(a, b, n) for a, b, n in zip(edges, edges[1:], counts, strict=False) if n > 0]


def _share(bins: list[tuple[float, float, int]], total: float, edges: list[float],
           low: float, high: float) -> float:
    """:func:`histogram_share` over bins and a total worked out once per histogram."""
    if total <= 0 or high <= low:
        return 0.0
    inside = 0.0
    for a, b, n in bins:
        if b <= a:  # a bin of one value (min == max): all in or all out
            inside += n if low <= a < high or (a == high == edges[-1]) else 0
            continue
        overlap = min(b, high) - max(a, low)
        if overlap > 0:
            inside += n * overlap / (b - a)
    return inside / total


def quantile_intervals(max_activation: float, edges: list[float], counts: list[int],
                       n: int = N_INTERVALS) -> list[tuple[float, float, float]]:
    """SAEDashboard's quantile groups: ``(binMin, binMax, binContains)`` for the ``n``
    equal-width intervals ``linspace(0, max, n + 1)``, ``binContains`` the fraction of all
    the feature's activating tokens in the interval (from the stored histogram; the last
    interval includes the max itself)."""
    top = finite(max_activation)
    bounds = [top * i / n for i in range(n + 1)]
    bins, total = _bins(edges, counts), float(sum(counts))
    out = []
    for i in range(n):
        high = bounds[i + 1] if i < n - 1 else math.nextafter(top, math.inf)
        out.append((bounds[i], bounds[i + 1], _share(bins, total, edges, bounds[i], high)))
    return out


def interval_of(value: float, max_activation: float, n: int = N_INTERVALS) -> int:
    """Which of the ``n`` equal-width intervals from 0 to the max ``value`` falls in."""
    top = finite(max_activation)
    if top <= 0:
        return 0
    return min(n - 1, max(0, int(finite(value) / top * n)))


def activation_rows(src: Source, feature: int, examples: dict[str, list[dict[str, Any]]],
                    stats: dict[str, Any]) -> list[dict[str, Any]]:
    """``Activation`` rows with their bin fields as SAEDashboard writes them: top windows
    ``binMin = -1``, ``binMax`` = the feature's max, ``binContains = -1``; every stored
    quantile window goes to the equal-width interval its maximum falls in
    (:func:`quantile_intervals`), whichever equal-count sampling bin it was drawn for."""
    max_activation = stats.get("max_activation")
    intervals = quantile_intervals(max_activation or 0.0, list(stats.get("histogram_edges") or []),
                                   list(stats.get("histogram_counts") or []))
    out = []
    for kind in ("top", "quantile"):
        for row in examples.get(kind, []):
            values = _values(row["activations"])
            if kind == "top":
                low, high, share = -1.0, _num(max_activation, 0.0), -1.0
            else:
                low, high, share = intervals[interval_of(row["max_activation"], max_activation or 0.0)]
                low, high, share = _num(low), _num(high), round(share, 6)
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


def explanation_rows(src: Source, feature: int, explanations: list[dict[str, Any]],
                     embeddings: dict[str, list[float]] | None = None
                     ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``Explanation`` rows and the ``ExplanationScore`` rows of their defined scores.

    With ``embeddings`` (text -> vector, see :mod:`.embeddings`) every row carries an
    ``embedding``: the ``vector(256)`` column Neuronpedia's explanation search reads."""
    rows, scores = [], []
    for e in explanations:
        explanation_id = row_id("explanation", e["explanation_id"])
        row = {
            "id": explanation_id, "modelId": src.model_id, "layer": src.source_id, "index": str(feature),
            "description": e["text"], "authorId": src.creator_id,
            "typeName": explanation_type(e["explainer"]),
            "explanationModelName": model_name(e["llm"], e["explainer"]),
            "notes": f"featurelens explainer {e['explainer']} with {e['llm']}",
        }
        if embeddings is not None:
            row["embedding"] = [round(float(v), 7) for v in embeddings[e["text"]]]
        rows.append(row)
        for s in e["scores"]:
            if s["score"] is None or not math.isfinite(float(s["score"])) or s["status"] != "ok":
                continue  # ExplanationScore.value is NOT NULL: an undefined score has no place
            scores.append({
                "id": row_id("score", e["explanation_id"], s["scorer"], s["llm"]),
                "initiatedByUserId": src.creator_id, "value": round(float(s["score"]), 6),
                "explanationId": explanation_id, "explanationScoreTypeName": score_type(s["scorer"]),
                "explanationScoreModelName": model_name(s["llm"], s["scorer"]),
                "jsonDetails": json.dumps({"scorer": s["scorer"], "llm": s["llm"],
                                           "n_parse_failures": int(s.get("n_parse_failures") or 0)}),
            })
    return rows, scores


def explanation_rows_of(src: Source, explanations: list[dict[str, Any]],
                        embeddings: dict[str, list[float]] | None = None
                        ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """:func:`explanation_rows` of explanations of several features (each names its ``feature``)."""
    rows, scores = [], []
    for e in explanations:
        e_rows, s_rows = explanation_rows(src, int(e["feature"]), [e], embeddings)
        rows += e_rows
        scores += s_rows
    return rows, scores


def explanation_type(explainer: str) -> str:
    """Neuronpedia's explanation type for a featurelens explainer (its own name for the
    two it has, ``featurelens_<name>`` otherwise; see :func:`config_rows`)."""
    return EXPLANATION_TYPES.get(explainer, f"featurelens_{slug(explainer)}")


def score_type(scorer: str) -> str:
    return f"featurelens_{slug(scorer)}"


def model_name(llm: str, method: str | None = None) -> str:
    """``provider:model`` -> ``model`` (Neuronpedia names models without a provider).

    Work done without an LLM (``offline:none``) is named for what did it: the scorer's own
    model where it has one (``embedding``: all-MiniLM-L6-v2), else ``featurelens-<method>``,
    the rule in featurelens that wrote it."""
    provider, _, model = llm.partition(":")
    if provider == OFFLINE_PROVIDER or not model:
        if method in OWN_MODELS:
            return OWN_MODELS[method]
        return f"featurelens-{slug(method)}" if method else "featurelens"
    return model.lower()


def config_rows(explanations: list[dict[str, Any]], scores: list[dict[str, Any]],
                creator_id: str) -> dict[str, list[dict[str, Any]]]:
    """The five files of ``v1/config/`` the importer reads before anything else (all five
    must exist or it stops): the explanation types, explanation models, score types and
    score models the rows refer to (it upserts them, and an explanation naming a type it
    lacks fails the insert), and ``eval_type`` (featurelens writes no evals: empty)."""
    types = sorted({e["typeName"] for e in explanations})
    models = sorted({e["explanationModelName"] for e in explanations})
    score_types = sorted({s["explanationScoreTypeName"] for s in scores})
    score_models = sorted({s["explanationScoreModelName"] for s in scores})
    return {
        "explanation_type": [{"name": t, "displayName": t,
                              "description": KNOWN_TYPE_DESCRIPTIONS.get(t, f"featurelens explainer ({t})"),
                              "creatorName": "featurelens", "creatorId": creator_id} for t in types],
        "explanation_model_type": [{"name": m, "displayName": m, "description": m, "creatorName": "featurelens"}
                                   for m in models],
        "explanation_score_type": [{"name": t, "displayName": t, "description": f"featurelens scorer ({t})",
                                    "creatorName": "featurelens", "creatorId": creator_id} for t in score_types],
        "explanation_score_model": [{"name": m, "displayName": m, "description": m, "creatorName": "featurelens"}
                                    for m in score_models],
        "eval_type": [],
    }


def replace_sql(src: Source) -> str:
    """SQL that removes one source's rows from Neuronpedia's database so a re-import of a
    new extraction replaces them: the importer skips rows whose keys exist, and deleting
    the ``Source`` row cascades to its neurons, activations, explanations and scores."""
    def quoted(text: str) -> str:
        return "'" + text.replace("'", "''") + "'"
    return (f"-- Run before re-importing {src.model_id}/{src.source_id} after a new extraction:\n"
            f"-- the import skips rows whose ids exist; this removes the source and, by cascade,\n"
            f"-- its features, activations, explanations and scores.\n"
            f'DELETE FROM "Source" WHERE "modelId" = {quoted(src.model_id)} AND "id" = {quoted(src.source_id)};\n')
