"""A transcoder set: one transcoder per layer (or a cross-layer transcoder) as ONE dictionary.

The set's features are numbered globally, ``offset[layer] + local index``, with the
layout in ``config["transcoder_set"]`` (:mod:`featurelens.core.transcoder_layout` says
it exactly and gives the SQL that finds each feature's layer). What code holding a set
uses:

- ``layout``: a :class:`~featurelens.core.transcoder_layout.SetLayout` (layers, offsets,
  input and output hooks, ``to_global(layer, local)`` / ``to_local(feature)``).
- ``transcoder(layer)``: that layer's :class:`SparseAutoencoder` (``W_enc [d_model,
  d_layer]``, ``b_enc``, ``W_dec [d_layer, d_model]``, ``b_dec``, optional ``W_skip
  [d_model, d_model]``, ``threshold`` for JumpReLU); its ``encode``/``forward`` read the
  layer's MLP input (``layout.hookpoint_in(layer)``) and predict its MLP output
  (``layout.hookpoint_out(layer)``). For a cross-layer set ``W_dec`` is the write to the
  feature's own layer.
- ``decoder_to(source, target)``: ``[d_source, d_model]``, what the features read at
  ``source`` write to ``target``'s MLP output (``W_dec`` when equal; zero for a per-layer
  set otherwise; the cross decoder of a cross-layer set).
- ``encode_sparse_layers({hookpoint_in: acts})``: every layer's active features with
  global indices, as one :class:`SparseActs` (what extraction stores).
- ``reconstruct(layer, {source: codes})``: the set's prediction of ``layer``'s MLP output.

As a :class:`Dictionary` the set has ``d_in = d_out = d_model`` and ``d_sae`` = all
features; ``hookpoints`` lists the input hookpoints extraction must capture.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from featurelens.core.dictionary_base import Dictionary, SparseActs
from featurelens.core.errors import FeaturelensError
from featurelens.core.transcoder_layout import ARCHITECTURE, CONFIG_KEY, SetLayout
from featurelens.plugins.dictionaries.sae import SparseAutoencoder


class TranscoderSet(Dictionary):
    """Per-layer transcoders (and, for a cross-layer set, their writes to later layers)."""

    architecture = ARCHITECTURE

    def __init__(self, transcoders: Mapping[int, SparseAutoencoder], *, input_hook: str = "ln2.hook_normalized",
                 output_hook: str = "hook_mlp_out", cross_decoders: Mapping[int, torch.Tensor] | None = None,
                 model_id: str | None = None, config: dict[str, Any] | None = None):
        if not transcoders:
            raise FeaturelensError("A transcoder set needs at least one layer's transcoder.")
        widths = {t.d_in for t in transcoders.values()} | {t.d_out for t in transcoders.values()}
        if len(widths) != 1:
            raise FeaturelensError(
                f"The layers of a transcoder set read and write vectors of different widths ({sorted(widths)}); "
                "every layer's transcoder must map the model's width to itself.")
        d_model = widths.pop()
        kind = "cross_layer" if cross_decoders else "per_layer"
        layout = SetLayout.from_sizes({int(l): t.d_sae for l, t in transcoders.items()}, kind=kind,
                                      input_hook=input_hook, output_hook=output_hook,
                                      skip=any(t.W_skip is not None for t in transcoders.values()))
        merged = dict(config or {})
        merged[CONFIG_KEY] = layout.to_config()
        merged["transcoder"] = True
        merged["layer_configs"] = {str(l): dict(t.config, architecture=getattr(t, "architecture", "transcoder"))
                                   for l, t in sorted(transcoders.items())}
        super().__init__(d_model, layout.d_sae, d_out=d_model, hookpoint=layout.hookpoint, model_id=model_id,
                         config=merged)
        self.layout = layout
        self.layers = torch.nn.ModuleDict({str(l): transcoders[l] for l in layout.layers})
        self.cross = {}
        for source, weight in (cross_decoders or {}).items():
            later = [l for l in layout.layers if l > source]
            expected = (transcoders[source].d_sae, len(later), d_model)
            if tuple(weight.shape) != expected:
                raise FeaturelensError(
                    f"The cross-layer decoder of layer {source} has shape {list(weight.shape)}, but a set whose "
                    f"later layers are {later} needs {list(expected)}; the files are from different transcoders.")
            name = f"cross_W_dec_{source}"
            self.register_buffer(name, weight)
            self.cross[int(source)] = name

    # -- layers ---------------------------------------------------------------------
    @property
    def hookpoints(self) -> list[str]:
        """The input hookpoint of every layer, in layer order."""
        return [self.layout.hookpoint_in(l) for l in self.layout.layers]

    def transcoder(self, layer: int) -> SparseAutoencoder:
        self.layout.slot(layer)  # unknown layer: one sentence
        return self.layers[str(layer)]  # type: ignore[return-value]

    def decoder_to(self, source: int, target: int) -> torch.Tensor:
        """``[d_source, d_model]``: the write of ``source``'s features into ``target``'s output."""
        own = self.transcoder(source)
        if source == target:
            return own.W_dec.detach()
        self.layout.slot(target)
        name = self.cross.get(source)
        if name is None or target < source:
            return torch.zeros_like(own.W_dec.detach())
        later = [l for l in self.layout.layers if l > source]
        return getattr(self, name)[:, later.index(target), :]

    # -- Dictionary interface (what extraction and logit effects call) ----------------
    def encode_sparse_layers(self, acts: Mapping[str, torch.Tensor], max_active: int | None = None) -> SparseActs:
        """Active features of every layer for the same tokens, with global indices.

        ``acts`` maps each input hookpoint to ``[n, d_model]``; the result has one row per
        token and the layers' active features side by side."""
        values, indices = [], []
        for slot in self.layout.slots:
            rows = acts[self.layout.hookpoint_in(slot.layer)]
            codes = self.transcoder(slot.layer).encode_sparse(rows.reshape(-1, rows.shape[-1]), max_active)
            values.append(codes.values)
            indices.append(codes.indices + slot.offset)
        return SparseActs(torch.cat(values, dim=1), torch.cat(indices, dim=1))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        raise FeaturelensError("A transcoder set reads a different activation at every layer; encode one "
                               "layer with set.transcoder(layer).encode(x), or all with encode_sparse_layers.")

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        raise FeaturelensError("A transcoder set writes a different output at every layer; decode one layer "
                               "with set.reconstruct(layer, codes).")

    def reconstruct(self, layer: int, codes: Mapping[int, torch.Tensor],
                    inputs: torch.Tensor | None = None) -> torch.Tensor:
        """The set's prediction of ``layer``'s MLP output from dense codes per source layer
        (``{layer: [n, d_layer]}``); ``inputs`` (the layer's MLP input) adds the skip path."""
        own = self.transcoder(layer)
        out = own.decode(codes[layer])
        for source in self.cross:
            if source < layer and source in codes:
                out = out + codes[source].to(out.dtype) @ self.decoder_to(source, layer).to(out.dtype)
        if inputs is not None:
            skip = own.skip_out(inputs)
            if skip is not None:
                out = out + skip
        return out

    def decoder_directions(self) -> torch.Tensor:
        """``[d_sae, d_model]``: each feature's write to its own layer's output."""
        return torch.cat([self.transcoder(l).W_dec.detach() for l in self.layout.layers], dim=0)
