"""A transcoder set: one transcoder per layer, stored and addressed as ONE dictionary.

Attribution graphs (``featurelens.graphs``) replace every MLP of a model by a per-layer
transcoder (MLP input ``blocks.L.ln2.hook_normalized`` -> MLP output
``blocks.L.hook_mlp_out``, optional skip path). The store knows the set as one
``dictionaries`` row, so its features share one id space with ``features``,
``explanations`` and ``scores``:

    global feature index = feature_offset(layer) + local index in that layer's transcoder

Offsets follow the layers in ascending order (layer ``layers[0]`` starts at 0, the next at
its width, ...). The store keeps the layout in ``transcoder_layers`` (one row per layer,
see :meth:`TranscoderSet.layer_rows`) and in the dictionary's ``config["layers"]``, so a
reader needs neither the weights nor this module to turn a global index into
``(layer, local)``: ``SELECT layer, feature - feature_offset FROM transcoder_layers WHERE
feature BETWEEN feature_offset AND feature_offset + d_sae - 1``.
"""

from __future__ import annotations

import bisect
from typing import Any, Mapping

import torch

from featurelens.core.dictionary_base import Dictionary
from featurelens.core.errors import FeaturelensError


def mlp_in_hookpoint(layer: int) -> str:
    """Where layer ``layer``'s transcoder reads: the normalised MLP input."""
    return f"blocks.{layer}.ln2.hook_normalized"


def mlp_out_hookpoint(layer: int) -> str:
    """What layer ``layer``'s transcoder predicts: the MLP output."""
    return f"blocks.{layer}.hook_mlp_out"


class TranscoderSet(torch.nn.Module):
    """Per-layer transcoders with one global feature index (see the module docstring).

    Each transcoder is a :class:`Dictionary` whose ``config["transcoder"]`` is true and
    that exposes ``pre_acts``/``activate`` (or ``encode``), ``W_enc [d_in, d_sae]``,
    ``W_dec [d_sae, d_out]``, ``b_dec`` and an optional ``W_skip [d_out, d_in]``, as every
    built-in learner does.
    """

    def __init__(self, transcoders: Mapping[int, Dictionary], *, model_id: str | None = None,
                 dictionary_id: str | None = None, config: dict[str, Any] | None = None):
        super().__init__()
        if not transcoders:
            raise FeaturelensError(
                "A transcoder set needs at least one layer's transcoder; pass one per layer to replace.")
        self.layers: list[int] = sorted(int(layer) for layer in transcoders)
        if self.layers[0] < 0:
            raise FeaturelensError(f"Transcoder set layers must be >= 0, got {self.layers[0]}.")
        widths = {transcoders[layer].d_in for layer in self.layers}
        if len(widths) != 1 or any(transcoders[layer].d_out != transcoders[layer].d_in
                                   for layer in self.layers):
            raise FeaturelensError(
                "Every transcoder of a set must read and write the model width (d_in == d_out, the "
                "same for all layers); check that each file belongs to this model.")
        self.d_model = widths.pop()
        self.transcoders = torch.nn.ModuleList([transcoders[layer] for layer in self.layers])
        self.offsets: list[int] = []
        total = 0
        for layer in self.layers:
            self.offsets.append(total)
            total += int(transcoders[layer].d_sae)
        self.d_sae = total
        self.model_id = model_id
        self.dictionary_id = dictionary_id
        self.config: dict[str, Any] = dict(config or {})
        self.config["layers"] = [
            {"layer": layer, "feature_offset": offset, "d_sae": int(tc.d_sae)}
            for layer, offset, tc in zip(self.layers, self.offsets, self.transcoders)]

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
                 "d_sae": int(tc.d_sae), "hookpoint": mlp_in_hookpoint(layer),
                 "hookpoint_out": mlp_out_hookpoint(layer)}
                for layer, offset, tc in zip(self.layers, self.offsets, self.transcoders)]
