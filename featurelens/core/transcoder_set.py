"""A transcoder set: one transcoder per layer, stored and addressed as ONE dictionary.

Attribution graphs (``featurelens graph``) replace every MLP of a model by a per-layer
transcoder (MLP input ``blocks.L.ln2.hook_normalized`` -> MLP output
``blocks.L.hook_mlp_out``, optional skip path), or by a cross-layer transcoder whose
layer-``L`` features also write to every later layer's MLP output. The store knows the
set as one ``dictionaries`` row (architecture ``transcoder_set``, hookpoint
``blocks.*.<input hook>``), so its features share one id space with ``features``,
``examples``, ``explanations`` and ``scores``:

    global feature index = feature_offset(layer) + local index in that layer's transcoder

Offsets follow the layers in ascending order (layer ``layers[0]`` starts at 0, the next at
its width, ...). The store keeps the layout in ``transcoder_layers`` (one row per layer,
see :meth:`TranscoderSet.layer_rows`; written with the dictionary row by extraction and
``dictionaries import``) and in the dictionary's ``config["layers"]`` (plus
``config["transcoder_set"]``: kind, hooks, skip; read back by
:class:`featurelens.core.transcoder_layout.SetLayout`), so a reader needs neither the
weights nor this module to turn a global index into ``(layer, local)``: ``SELECT layer,
feature - feature_offset FROM transcoder_layers WHERE feature BETWEEN feature_offset AND
feature_offset + d_sae - 1``.

As a :class:`Dictionary` the set has ``d_in = d_out = d_model`` and ``d_sae`` = all
features; ``hookpoints`` lists each layer's input hookpoint, which extraction captures in
one forward pass and encodes with :meth:`TranscoderSet.encode_sparse_layers`.
"""

from __future__ import annotations

import bisect
from typing import Any, Mapping

import torch

from featurelens.core.dictionaries.base import Dictionary, SparseActs
from featurelens.core.errors import FeaturelensError
from featurelens.core.transcoder_layout import ARCHITECTURE, SetLayout


def mlp_in_hookpoint(layer: int) -> str:
    """Where layer ``layer``'s transcoder reads: the normalised MLP input."""
    return f"blocks.{layer}.ln2.hook_normalized"


def mlp_out_hookpoint(layer: int) -> str:
    """What layer ``layer``'s transcoder predicts: the MLP output."""
    return f"blocks.{layer}.hook_mlp_out"


class TranscoderSet(Dictionary):
    """Per-layer transcoders with one global feature index (see the module docstring).

    Each transcoder is a :class:`Dictionary` whose ``config["transcoder"]`` is true and
    that exposes ``pre_acts``/``activate`` (or ``encode``), ``W_enc [d_in, d_sae]``,
    ``W_dec [d_sae, d_out]``, ``b_dec`` and an optional ``W_skip [d_out, d_in]``, as every
    built-in learner does. ``cross_decoders[L]`` (``[d_L, later layers, d_model]``) makes a
    cross-layer set: what layer ``L``'s features write to each later layer's output.
    """

    architecture = ARCHITECTURE

    def __init__(self, transcoders: Mapping[int, Dictionary], *, model_id: str | None = None,
                 dictionary_id: str | None = None, config: dict[str, Any] | None = None,
                 input_hook: str = "ln2.hook_normalized", output_hook: str = "hook_mlp_out",
                 cross_decoders: Mapping[int, torch.Tensor] | None = None):
        if not transcoders:
            raise FeaturelensError(
                "A transcoder set needs at least one layer's transcoder; pass one per layer to replace.")
        layers = sorted(int(layer) for layer in transcoders)
        if layers[0] < 0:
            raise FeaturelensError(f"Transcoder set layers must be >= 0, got {layers[0]}.")
        widths = {transcoders[layer].d_in for layer in layers}
        if len(widths) != 1 or any(transcoders[layer].d_out != transcoders[layer].d_in for layer in layers):
            raise FeaturelensError(
                "Every transcoder of a set must read and write the model width (d_in == d_out, the "
                "same for all layers); check that each file belongs to this model.")
        d_model = widths.pop()
        layout = SetLayout.from_sizes({layer: int(transcoders[layer].d_sae) for layer in layers},
                                      kind="cross_layer" if cross_decoders else "per_layer",
                                      input_hook=input_hook, output_hook=output_hook,
                                      skip=any(getattr(transcoders[l], "W_skip", None) is not None for l in layers))
        merged = dict(config or {})
        merged.update(layout.to_config())
        merged["transcoder"] = True
        super().__init__(d_model, layout.d_sae, d_out=d_model, hookpoint=layout.hookpoint, model_id=model_id,
                         config=merged)
        self.layout = layout
        self.layers: list[int] = layers
        self.d_model = d_model
        for layer in layers:  # each layer reads and writes its own hookpoints (steering edits it alone)
            own = transcoders[layer]
            own.hookpoint = own.hookpoint or layout.hookpoint_in(layer)
            own.config["hookpoint_out"] = own.config.get("hookpoint_out") or layout.hookpoint_out(layer)
        self.transcoders = torch.nn.ModuleList([transcoders[layer] for layer in layers])
        self.offsets: list[int] = [slot.offset for slot in layout.slots]
        self.dictionary_id = dictionary_id
        self.cross: dict[int, str] = {}
        for source, weight in sorted((cross_decoders or {}).items()):
            later = [l for l in layers if l > source]
            expected = (int(transcoders[source].d_sae), len(later), d_model)
            if tuple(weight.shape) != expected:
                raise FeaturelensError(
                    f"The cross-layer decoder of layer {source} has shape {list(weight.shape)}, but a set whose "
                    f"later layers are {later} needs {list(expected)}; the files are from different transcoders.")
            name = f"cross_W_dec_{source}"
            self.register_buffer(name, weight)
            self.cross[int(source)] = name

    # -- the layout -------------------------------------------------------------------
    def transcoder(self, layer: int) -> Dictionary:
        """The transcoder replacing layer ``layer``'s MLP."""
        try:
            return self.transcoders[self.layers.index(layer)]
        except ValueError:
            raise FeaturelensError(
                f"The transcoder set has no layer {layer} (it has {self.layers}).") from None

    def offset(self, layer: int) -> int:
        """Global index of layer ``layer``'s first feature."""
        return self.offsets[self.layers.index(layer)]

    def global_index(self, layer: int, local: int) -> int:
        """``feature_offset(layer) + local``."""
        return self.offset(layer) + int(local)

    def locate(self, feature: int) -> tuple[int, int]:
        """``(layer, local index)`` of global feature ``feature``."""
        if not 0 <= feature < self.d_sae:
            raise FeaturelensError(
                f"Feature {feature} is outside the transcoder set (0..{self.d_sae - 1}).")
        slot = bisect.bisect_right(self.offsets, feature) - 1
        return self.layers[slot], feature - self.offsets[slot]

    def has_skip(self) -> bool:
        return any(getattr(tc, "W_skip", None) is not None for tc in self.transcoders)

    def layer_rows(self, dictionary_id: str) -> list[dict[str, Any]]:
        """The ``transcoder_layers`` rows of this set stored as ``dictionary_id``."""
        return [{"dictionary_id": dictionary_id, "layer": layer, "feature_offset": offset,
                 "d_sae": int(tc.d_sae), "hookpoint": self.layout.hookpoint_in(layer),
                 "hookpoint_out": self.layout.hookpoint_out(layer)}
                for layer, offset, tc in zip(self.layers, self.offsets, self.transcoders)]

    @property
    def hookpoints(self) -> list[str]:
        """The input hookpoint of every layer, in layer order."""
        return [self.layout.hookpoint_in(layer) for layer in self.layers]

    def decoder_to(self, source: int, target: int) -> torch.Tensor:
        """``[d_source, d_model]``: what ``source``'s features write to ``target``'s MLP output
        (their ``W_dec`` when equal; zero for a per-layer set otherwise)."""
        own = self.transcoder(source).W_dec.detach()
        if source == target:
            return own
        self.transcoder(target)
        name = self.cross.get(source)
        if name is None or target < source:
            return torch.zeros_like(own)
        later = [l for l in self.layers if l > source]
        return getattr(self, name)[:, later.index(target), :]

    # -- the Dictionary interface (extraction, logit effects) ------------------------
    def encode_sparse_layers(self, acts: Mapping[str, torch.Tensor], max_active: int | None = None) -> SparseActs:
        """Every layer's active features for the same tokens, with global indices.

        ``acts`` maps each input hookpoint to ``[n, d_model]``; the result has one row per
        token and the layers' active features side by side."""
        values, indices = [], []
        for layer, offset in zip(self.layers, self.offsets):
            rows = acts[self.layout.hookpoint_in(layer)]
            codes = self.transcoder(layer).encode_sparse(rows.reshape(-1, rows.shape[-1]), max_active)
            values.append(codes.values)
            indices.append(codes.indices + offset)
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
        if inputs is not None and getattr(own, "W_skip", None) is not None:
            out = out + own.skip_out(inputs)
        return out

    def decoder_directions(self) -> torch.Tensor:
        """``[d_sae, d_model]``: each feature's write to its own layer's output."""
        return torch.cat([tc.W_dec.detach() for tc in self.transcoders], dim=0)
