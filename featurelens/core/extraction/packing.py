"""Tokenising documents and packing them into fixed-length context windows.

Documents are tokenised one by one, joined with the end-of-text token, and cut into
windows of ``context`` tokens (the first being BOS when ``prepend_bos``). Windows are
numbered from 0 in corpus order, so a resumed run can skip exactly the windows it has
already processed and every window id means the same text on every run.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import torch

from featurelens.core.errors import FeaturelensError
from featurelens.core.extraction.text_chunks import tokenize_in_chunks
from featurelens.core.host.protocols import Document


@dataclass(frozen=True)
class Window:
    """One packed context window."""

    sequence_id: int
    tokens: list[int]
    document: str  #: where its first token came from


def pack(documents: Iterable[Document], tokenizer: Any, *, context: int, prepend_bos: bool = True,
         max_windows: int | None = None) -> Iterator[Window]:
    """Windows of exactly ``context`` tokens; a short tail at the end is dropped."""
    if context < 2:
        raise FeaturelensError(f"--context {context} is too short; use at least 2 tokens.")
    bos = tokenizer.bos_token_id if prepend_bos else None
    if prepend_bos and bos is None:
        raise FeaturelensError(
            "This tokenizer has no BOS token, so windows cannot start with one; pass --no-bos."
        )
    body = context - (1 if bos is not None else 0)
    separator = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    buffer: list[int] = []
    refs: list[tuple[int, str]] = []  # (offset in buffer where a document starts, its ref)
    produced = 0
    for document in documents:
        started = False
        # a long document is tokenised piece by piece, and left as soon as enough windows exist
        for ids in itertools.chain(tokenize_in_chunks(document.text, tokenizer), [separator]):
            if not ids or (ids is separator and not started):
                continue
            if not started:
                refs.append((len(buffer), document.ref))
                started = True
            buffer.extend(ids)
            while len(buffer) >= body:
                ref = [r for offset, r in refs if offset <= 0][-1]
                yield Window(produced, ([bos] if bos is not None else []) + buffer[:body], ref)
                produced += 1
                if max_windows is not None and produced >= max_windows:
                    return
                del buffer[:body]
                refs = [(offset - body, r) for offset, r in refs]
                first = max(i for i, (offset, _) in enumerate(refs) if offset <= 0) if any(
                    offset <= 0 for offset, _ in refs) else 0
                refs = refs[first:]
    if produced == 0 and not refs:
        raise FeaturelensError(
            "The corpus holds no text to tokenize (its documents are empty or whitespace); "
            "point --corpus at files with text.")
    if produced == 0:
        raise FeaturelensError(
            f"The corpus gives fewer than {body} tokens, not enough for one window of {context}; "
            "give it more text (or, where the command takes one, a smaller --context)."
        )


def special_mask(input_ids: torch.Tensor, special_ids: Iterable[int]) -> torch.Tensor:
    """True where a token is BOS, padding or another special token (never an example)."""
    ids = torch.tensor(sorted(set(special_ids)), dtype=input_ids.dtype, device=input_ids.device)
    if ids.numel() == 0:
        return torch.zeros_like(input_ids, dtype=torch.bool)
    return torch.isin(input_ids, ids)


def outlier_mask(acts: torch.Tensor, factor: float | None) -> torch.Tensor:
    """True at positions whose activation norm exceeds ``factor`` x the batch median.

    Attention sinks (often the first token) have norms tens of times the rest and would
    otherwise top every feature's examples.
    """
    if factor is None:
        return torch.zeros(acts.shape[:-1], dtype=torch.bool, device=acts.device)
    norms = acts.float().norm(dim=-1)
    return norms > factor * norms.flatten().median()
