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


def tiny_identity_store(model_dir: Any, folder: Any, hook: str = "blocks.0.hook_resid_post") -> tuple[Any, str]:
    """A store extracted from the tiny model with the identity dictionary over SAMPLE_TEXT:
    the small real store the steering and serve tests share. Returns (path, dictionary id)."""
    from featurelens.testing import SAMPLE_TEXT

    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(SAMPLE_TEXT * 4))
    result = extract_with(model=str(model_dir), hookpoint=hook, dictionary="identity", corpus=str(corpus),
                          tokens=128, context=16, batch_size=4, top_k=3, store=folder / "s.duckdb",
                          device="cpu", progress=False)
    return folder / "s.duckdb", result.dictionary_id
