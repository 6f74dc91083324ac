"""``extract_with(**options)``: call extract() with spec fields and run options mixed,
as the extraction tests parametrise them in one dict.

Tests read tiny corpora of one or two documents, which a document-level held-out split
cannot cut, so ``split`` defaults to ``all`` here; tests of the split pass it."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from featurelens.core.extraction import ExtractResult, ExtractSpec, extract

SPEC_FIELDS = {f.name for f in fields(ExtractSpec)}


def extract_with(**options: Any) -> ExtractResult:
    options.setdefault("split", "all")
    spec = ExtractSpec(**{k: v for k, v in options.items() if k in SPEC_FIELDS})
    return extract(spec, **{k: v for k, v in options.items() if k not in SPEC_FIELDS})


def split_options(options: dict[str, Any]) -> tuple[ExtractSpec, dict[str, Any]]:
    """The spec fields of ``options`` as an ExtractSpec, and the run options left over."""
    spec = ExtractSpec(**{k: v for k, v in options.items() if k in SPEC_FIELDS})
    return spec, {k: v for k, v in options.items() if k not in SPEC_FIELDS}


def ray_extract_with(**options: Any) -> ExtractResult:
    """``featurelens.scale.extract_on_ray`` called like :func:`extract_with`."""
    from featurelens.scale import extraction

    options.setdefault("split", "all")
    spec, rest = split_options(options)
    return extraction.extract_on_ray(spec, **rest)
