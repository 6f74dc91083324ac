"""Where each layer's features sit in a transcoder set: one dictionary, one feature index.

A transcoder set (one transcoder per layer, or a cross-layer transcoder) is ONE
dictionary in the store (:mod:`featurelens.core.transcoder_set`). Its features are
numbered globally, layer after layer:

    global feature index = feature_offset[layer] + local index within that layer's transcoder
    feature_offset[layers[0]] = 0,  feature_offset[layers[i + 1]] = feature_offset[layers[i]] + d_sae[layers[i]]

so ``features.feature``, ``examples.feature``, ``explanations.feature`` and
``graph_nodes.feature`` all hold the global index, and every per-feature table works
for a set unchanged. The store's ``transcoder_layers`` table holds one row per layer
(see :data:`LAYER_SQL`); the dictionary's ``config`` JSON repeats the layout for code
holding only a config::

    {"layers": [{"layer": 0, "feature_offset": 0, "d_sae": 128}, {"layer": 1, "feature_offset": 128, ...}],
     "transcoder_set": {"kind": "per_layer" | "cross_layer", "input_hook": "ln2.hook_normalized",
                        "output_hook": "hook_mlp_out", "skip": false}}

The store's ``dictionaries.hookpoint`` of a set is ``blocks.*.<input_hook>`` (``*`` for
every layer of the set), its ``architecture`` is ``transcoder_set``, ``d_sae`` the total
number of features. For a cross-layer transcoder a feature's ``layer`` is the layer it
reads (encodes at); it writes to that layer's output and every later one.
"""

from __future__ import annotations

import bisect
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from featurelens.core.errors import FeaturelensError

#: featurelens's set folder: this file names each layer's transcoder (a folder or a name).
MANIFEST = "transcoder_set.json"
#: The key of the layout in a dictionary's config.
CONFIG_KEY = "transcoder_set"
#: ``dictionaries.architecture`` of a set.
ARCHITECTURE = "transcoder_set"
KINDS = ("per_layer", "cross_layer")

#: ``(dictionary_id, layer, feature_offset, d_sae)`` for every layer of every set in the store;
#: a feature ``f`` of the set is feature ``f - feature_offset`` of the layer whose range holds it.
LAYER_SQL = "SELECT dictionary_id, layer, feature_offset, d_sae FROM transcoder_layers"

#: Every stored feature of every set with its layer and local index.
FEATURE_LAYER_SQL = """
SELECT f.dictionary_id, f.feature, t.layer, f.feature - t.feature_offset AS local_feature
FROM features f JOIN transcoder_layers t
  ON f.dictionary_id = t.dictionary_id AND f.feature BETWEEN t.feature_offset AND t.feature_offset + t.d_sae - 1
""".strip()


@dataclass(frozen=True)
class LayerSlot:
    """One layer's block of global feature indices: ``[offset, offset + d_sae)``."""

    layer: int
    offset: int
    d_sae: int


@dataclass(frozen=True)
class SetLayout:
    """The layers of a transcoder set and their offsets (see the module docstring)."""

    slots: tuple[LayerSlot, ...]
    kind: str = "per_layer"
    input_hook: str = "ln2.hook_normalized"
    output_hook: str = "hook_mlp_out"
    skip: bool = False

    @classmethod
    def from_sizes(cls, sizes: Mapping[int, int], **fields: Any) -> "SetLayout":
        """Consecutive offsets for ``{layer: d_sae}``, layers in increasing order."""
        slots, offset = [], 0
        for layer in sorted(sizes):
            size = sizes[layer]
            if not isinstance(size, int) or isinstance(size, bool) or size < 1:
                raise FeaturelensError(f"Layer {layer} of a transcoder set has {size!r} features; "
                                       "each layer needs a positive number.")
            slots.append(LayerSlot(int(layer), offset, size))
            offset += size
        if not slots:
            raise FeaturelensError("A transcoder set needs at least one layer.")
        return cls(tuple(slots), **fields)

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | str | None) -> "SetLayout":
        """The layout recorded in a dictionary's config (a dict or its JSON text).

        Raises one sentence when the config is not a set's or its layout is inconsistent
        (layers out of order, offsets with gaps or overlaps)."""
        if isinstance(config, str):
            config = json.loads(config)
        config = config or {}
        block = config.get(CONFIG_KEY)
        if not isinstance(block, Mapping) or not isinstance(config.get("layers"), list):
            raise FeaturelensError("This dictionary is not a transcoder set (its config has no "
                                   f"{CONFIG_KEY!r} layout); pass a set made by `featurelens train "
                                   "--architecture transcoder --layers ...` or loaded from a set's folder.")
        slots = []
        for entry in config["layers"]:
            try:
                slots.append(LayerSlot(int(entry["layer"]), int(entry["feature_offset"]), int(entry["d_sae"])))
            except (KeyError, TypeError, ValueError):
                raise FeaturelensError(f"A layer entry {entry!r} of a transcoder set's config lacks "
                                       "layer, feature_offset or d_sae; re-save the set.") from None
        layout = cls(tuple(slots), kind=str(block.get("kind", "per_layer")),
                     input_hook=str(block.get("input_hook", "ln2.hook_normalized")),
                     output_hook=str(block.get("output_hook", "hook_mlp_out")),
                     skip=bool(block.get("skip", False)))
        layout.check()
        return layout

    def check(self) -> None:
        if self.kind not in KINDS:
            raise FeaturelensError(f"A transcoder set's kind is {self.kind!r}; it must be one of {', '.join(KINDS)}.")
        expected = 0
        previous = None
        for slot in self.slots:
            if previous is not None and slot.layer <= previous:
                raise FeaturelensError("A transcoder set's layers must be listed in increasing order, "
                                       f"found {slot.layer} after {previous}; re-save the set.")
            if slot.offset != expected or slot.d_sae < 1:
                raise FeaturelensError(f"Layer {slot.layer} of a transcoder set starts at feature {slot.offset} "
                                       f"with {slot.d_sae} features, but the layers before it end at {expected}; "
                                       "the layout is inconsistent, re-save the set.")
            expected += slot.d_sae
            previous = slot.layer

    def to_config(self) -> dict[str, Any]:
        """The keys a set adds to its dictionary's config (``layers`` and ``transcoder_set``)."""
        return {"layers": [{"layer": s.layer, "feature_offset": s.offset, "d_sae": s.d_sae} for s in self.slots],
                CONFIG_KEY: {"kind": self.kind, "input_hook": self.input_hook, "output_hook": self.output_hook,
                             "skip": self.skip}}

    @property
    def layers(self) -> list[int]:
        return [s.layer for s in self.slots]

    @property
    def d_sae(self) -> int:
        last = self.slots[-1]
        return last.offset + last.d_sae

    def slot(self, layer: int) -> LayerSlot:
        for s in self.slots:
            if s.layer == layer:
                return s
        raise FeaturelensError(f"The transcoder set has no layer {layer}; its layers are "
                               f"{', '.join(map(str, self.layers))}.")

    def to_global(self, layer: int, local: int) -> int:
        """The set's feature index of feature ``local`` of ``layer``'s transcoder."""
        s = self.slot(layer)
        if not 0 <= local < s.d_sae:
            raise FeaturelensError(f"Layer {layer} of the set has {s.d_sae} features, so there is no feature {local}.")
        return s.offset + local

    def to_local(self, feature: int) -> tuple[int, int]:
        """``(layer, local index)`` of the set's feature ``feature``."""
        if not 0 <= feature < self.d_sae:
            raise FeaturelensError(f"The transcoder set has {self.d_sae} features, so there is no feature {feature}.")
        i = bisect.bisect_right([s.offset for s in self.slots], feature) - 1
        s = self.slots[i]
        return s.layer, feature - s.offset

    def hookpoint_in(self, layer: int) -> str:
        return f"blocks.{layer}.{self.input_hook}"

    def hookpoint_out(self, layer: int) -> str:
        return f"blocks.{layer}.{self.output_hook}"

    @property
    def hookpoint(self) -> str:
        """What ``dictionaries.hookpoint`` says for the whole set."""
        return f"blocks.*.{self.input_hook}"


def is_set_config(config: Mapping[str, Any] | str | None) -> bool:
    """Whether a dictionary's config holds a transcoder set's layout."""
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except json.JSONDecodeError:
            return False
    return isinstance(config, Mapping) and isinstance(config.get(CONFIG_KEY), Mapping)


def layer_list(spec: str | Sequence[int], n_layers: int) -> list[int]:
    """``--layers``: ``all``, ``0-5``, ``0,2,4`` or a mix, checked against the model's depth."""
    if not isinstance(spec, str):
        chosen = [int(x) for x in spec]
    elif spec.strip() == "all":
        chosen = list(range(n_layers))
    else:
        chosen = []
        for part in spec.split(","):
            part = part.strip()
            try:
                if "-" in part:
                    first, last = (int(x) for x in part.split("-", 1))
                    chosen.extend(range(first, last + 1))
                else:
                    chosen.append(int(part))
            except ValueError:
                raise FeaturelensError(f"--layers {spec!r} is not a layer list; write all, 0-5 or 0,2,4.") from None
    bad = [x for x in chosen if not 0 <= x < n_layers]
    if bad or not chosen:
        raise FeaturelensError(f"--layers {spec!r} names layers outside 0..{n_layers - 1} of this model "
                               "(or none); pick layers the model has.")
    return sorted(set(chosen))


def write_manifest(folder: Path, layers: Mapping[int, str], *, input_hook: str = "ln2.hook_normalized",
                   output_hook: str = "hook_mlp_out", model_id: str | None = None,
                   dictionary_id: str | None = None) -> None:
    """``transcoder_set.json`` (layer -> folder or name, the hooks the set reads and writes),
    written to a temporary name and renamed, so a set folder is complete or has no manifest."""
    data: dict[str, Any] = {"layers": {str(l): spec for l, spec in sorted(layers.items())},
                            "input_hook": input_hook, "output_hook": output_hook}
    if model_id:
        data["model_id"] = model_id
    if dictionary_id:
        data["dictionary_id"] = dictionary_id
    tmp = Path(folder) / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, Path(folder) / MANIFEST)
