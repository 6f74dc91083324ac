"""Validators for Neuronpedia graph JSON and its per-feature detail files.

The constraints are transcribed (required fields and their JSON types, not the prose) from
``apps/webapp/app/api/graph/graph-schema.json`` and ``feature-details-schema.json`` in the
public neuronpedia repository (hijohnnylin/neuronpedia, Apache-2.0 / MIT, commit
ebb8426fc550), the schemas its upload page validates a graph with (draft-07). Optional
fields are typed where the viewer reads them; extra fields are allowed, as there.
"""

from __future__ import annotations

from typing import Any

import jsonschema

NUMBER_OR_NULL = {"type": ["number", "null"]}

GRAPH_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "required": ["metadata", "qParams", "nodes", "links"],
    "properties": {
        "metadata": {
            "type": "object",
            "required": ["slug", "scan", "prompt_tokens", "prompt"],
            "properties": {
                "slug": {"type": "string"}, "scan": {"type": "string"}, "prompt": {"type": "string"},
                "prompt_tokens": {"type": "array", "items": {"type": "string"}},
                "node_threshold": {"type": "number"},
                "feature_details": {"type": "object", "properties": {
                    "feature_json_base_url": {"type": "string"}, "neuronpedia_source_set": {"type": "string"}}},
                "info": {"type": "object", "properties": {
                    "description": {"type": "string"}, "source_urls": {"type": "array"},
                    "generator": {"type": "object", "properties": {
                        "name": {"type": "string"}, "version": {"type": "string"}, "url": {"type": "string"}}},
                    "create_time_ms": {"type": "number"}}},
                "generation_settings": {"type": "object", "properties": {
                    "max_n_logits": {"type": "integer"}, "desired_logit_prob": {"type": "number"},
                    "batch_size": {"type": "integer"}, "max_feature_nodes": {"type": "integer"}}},
                "pruning_settings": {"type": "object", "properties": {
                    "node_threshold": {"type": "number"}, "edge_threshold": {"type": "number"}}},
            },
        },
        "qParams": {"type": "object", "properties": {
            "pinnedIds": {"type": "array", "items": {"type": "string"}}, "supernodes": {"type": "array"},
            "linkType": {"type": "string"}, "clickedId": {"type": "string"}, "sg_pos": {"type": "string"}}},
        "nodes": {"type": "array", "items": {
            "type": "object",
            "required": ["node_id", "feature", "layer", "ctx_idx", "feature_type", "jsNodeId", "clerp"],
            "properties": {
                "node_id": {"type": "string"}, "feature": {"type": ["integer", "null"]},
                "layer": {"type": ["string", "integer"]}, "ctx_idx": {"type": "integer"},
                "feature_type": {"type": "string"}, "jsNodeId": {"type": "string"}, "clerp": {"type": "string"},
                "influence": NUMBER_OR_NULL, "activation": NUMBER_OR_NULL,
            }}},
        "links": {"type": "array", "items": {
            "type": "object", "required": ["source", "target", "weight"],
            "properties": {"source": {"type": "string"}, "target": {"type": "string"}, "weight": {"type": "number"}}}},
    },
}

FEATURE_DETAIL_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "required": ["index", "examples_quantiles"],
    "properties": {
        "index": {"type": "number"},
        "examples_quantiles": {"type": "array", "items": {
            "type": "object", "required": ["quantile_name", "examples"],
            "properties": {"quantile_name": {"type": "string"}, "examples": {"type": "array", "items": {
                "type": "object", "required": ["tokens_acts_list", "tokens"],
                "properties": {"tokens_acts_list": {"type": "array", "items": {"type": "number"}},
                               "tokens": {"type": "array", "items": {"type": "string"}}}}}}}},
        "top_logits": {"type": "array", "items": {"type": "string"}},
        "bottom_logits": {"type": "array", "items": {"type": "string"}},
    },
}


def graph_errors(document: Any) -> list[str]:
    """Every schema violation of a graph document, as ``path: message``; empty when valid."""
    validator = jsonschema.Draft7Validator(GRAPH_SCHEMA)
    return [f"{'/'.join(map(str, e.absolute_path)) or 'root'}: {e.message}" for e in validator.iter_errors(document)]


def feature_errors(document: Any) -> list[str]:
    validator = jsonschema.Draft7Validator(FEATURE_DETAIL_SCHEMA)
    return [f"{'/'.join(map(str, e.absolute_path)) or 'root'}: {e.message}" for e in validator.iter_errors(document)]
