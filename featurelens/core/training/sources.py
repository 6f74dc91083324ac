"""Where training activations come from: a model read at hookpoints, or given tensors.

A source yields numbered chunks of rows ``[n, d_in + d_out]`` (input and, for
transcoders, target side by side) in a fixed order, so a resumed run asks for
"chunks from number N on" and gets exactly the ones it has not used. Reading a
model skips already-used windows by tokenising them only, never running them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Iterator, Protocol

import torch

from featurelens.core.errors import FeaturelensError
from featurelens.core.host.protocols import ModelBackendBase, declared


class ActivationSource(Protocol):
    d_in: int
    d_out: int  #: 0 when the target is the input itself (SAEs)

    def fingerprint(self) -> str:
        """A stable id of what the source yields (part of the resume key)."""

    def chunks(self, start: int = 0) -> Iterator[torch.Tensor]:
        """Chunks ``start, start + 1, ...`` as float tensors ``[n, d_in + d_out]``."""


@dataclass
class TensorSource:
    """Rows of a tensor (or an input/target pair), in order, ``chunk_rows`` at a time,
    over as many epochs as the token budget needs."""

    inputs: torch.Tensor
    targets: torch.Tensor | None = None
    chunk_rows: int = 4096
    d_in: int = field(init=False)
    d_out: int = field(init=False)

    def __post_init__(self) -> None:
        if self.inputs.dim() != 2 or self.inputs.shape[0] == 0:
            raise FeaturelensError(
                f"Training activations must be a non-empty [n, d] matrix, got shape {list(self.inputs.shape)}."
            )
        if self.targets is not None and self.targets.shape[0] != self.inputs.shape[0]:
            raise FeaturelensError(
                f"Training inputs have {self.inputs.shape[0]} rows but targets {self.targets.shape[0]}; "
                "pass one target row per input row."
            )
        self.d_in = int(self.inputs.shape[1])
        self.d_out = int(self.targets.shape[1]) if self.targets is not None else 0

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for t in (self.inputs, self.targets):
            if t is not None:
                digest.update(str(tuple(t.shape)).encode())
                digest.update(t[:: max(1, t.shape[0] // 64)].float().contiguous().numpy().tobytes())
        return "tensor-" + digest.hexdigest()[:16]

    def chunks(self, start: int = 0, stride: int = 1) -> Iterator[torch.Tensor]:
        """Endless: the rows are repeated epoch after epoch (the buffer reshuffles them).
        ``stride`` > 1 yields every stride-th chunk (one data-parallel worker's share)."""
        rows = self.inputs if self.targets is None else torch.cat([self.inputs, self.targets], dim=1)
        per_epoch = -(-rows.shape[0] // self.chunk_rows)
        index = start
        while True:
            begin = (index % per_epoch) * self.chunk_rows
            yield rows[begin:begin + self.chunk_rows].float()
            index += stride


@dataclass
class ModelSource:
    """Activations of ``backend`` at ``hookpoint`` (and ``hookpoint_out`` for transcoders)
    over packed windows of ``corpus``; BOS and other special tokens are left out, since
    their huge norms (attention sinks) would dominate the reconstruction loss."""

    backend: Any
    hookpoint: str
    corpus: str = "stdlib"
    context: int = 64
    windows_per_chunk: int = 8
    hookpoint_out: str | None = None
    prepend_bos: bool = True
    corpus_options: dict[str, Any] = field(default_factory=dict)
    split: str = "train"  #: the corpus's training documents; held-out ones are for evaluation
    d_in: int = field(init=False)
    d_out: int = field(init=False)

    def __post_init__(self) -> None:
        self.d_in = int(self.backend.hookpoint_width(self.hookpoint))
        self.d_out = int(self.backend.hookpoint_width(self.hookpoint_out)) if self.hookpoint_out else 0
        check_context = declared(self.backend, "check_context", ModelBackendBase)
        if callable(check_context):
            check_context(self.context)

    def _corpus(self) -> Any:
        from featurelens.core.corpus.resolve import resolve_corpus
        from featurelens.core.corpus.split import split_corpus

        return split_corpus(resolve_corpus(self.corpus, **self.corpus_options), self.split)

    def describe(self) -> dict[str, Any]:
        """The corpus and split trained on (recorded in the training summary)."""
        return {"corpus": self.corpus, **self._corpus().describe()}

    def fingerprint(self) -> str:
        key = [self._corpus().fingerprint(), self.backend.model_id, self.hookpoint,
               self.hookpoint_out, self.context, self.windows_per_chunk, self.prepend_bos]
        return "model-" + hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]

    def chunks(self, start: int = 0, stride: int = 1) -> Iterator[torch.Tensor]:
        """Chunks ``start, start + stride, ...``; the model runs only on those."""
        from featurelens.core.extraction.packing import pack, special_mask

        tokenizer = self.backend.tokenizer
        windows = pack(self._corpus(), tokenizer, context=self.context, prepend_bos=self.prepend_bos)
        specials = set(tokenizer.all_special_ids)
        hookpoints = [self.hookpoint] + ([self.hookpoint_out] if self.hookpoint_out else [])
        batch: list[list[int]] = []
        index = 0
        for window in windows:
            batch.append(window.tokens)
            if len(batch) < self.windows_per_chunk:
                continue
            if index >= start and (index - start) % stride == 0:
                yield self._activations(batch, hookpoints, specials, special_mask)
            index += 1
            batch = []
        if batch and index >= start and (index - start) % stride == 0:
            yield self._activations(batch, hookpoints, specials, special_mask)

    def _activations(self, batch: list[list[int]], hookpoints: list[str], specials: set[int],
                     special_mask: Any) -> torch.Tensor:
        ids = torch.tensor(batch, dtype=torch.long)
        acts = self.backend.run(ids, hookpoints)
        keep = ~special_mask(ids, specials).reshape(-1).to(acts[self.hookpoint].device)
        parts = [acts[h].reshape(-1, acts[h].shape[-1])[keep].float() for h in hookpoints]
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
