"""Train a transcoder for every chosen layer in one command, into one set folder.

``OUTPUT/layer_<l>/`` holds layer ``l``'s transcoder, trained by
:func:`~featurelens.core.training.api.train_dictionary` exactly as a single transcoder
is (from ``blocks.l.<input_hook>`` to ``blocks.l.<output_hook>``), with its checkpoints
beside it; ``OUTPUT/transcoder_set.json`` appears, in one rename, only when every layer
is finished. Killed at any moment, the same command skips the finished layers, resumes
the interrupted one from its last checkpoint and trains the rest, so a set is never
half-written and no layer is trained twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from featurelens.core.errors import FeaturelensError
from featurelens.core.progress import phase
from featurelens.core.training.trainer import TrainResult
from featurelens.core.transcoder_layout import MANIFEST, layer_list, write_manifest


@dataclass
class SetTrainResult:
    """What training a set did: each layer's result and whether the set was already there."""

    output: Path
    layers: dict[int, TrainResult]
    already_done: bool

    @property
    def d_sae(self) -> int:
        return sum(r.dictionary.d_sae for r in self.layers.values())


def train_transcoder_set(*, backend: Any, output: str | Path, layers: str | list[int] = "all",
                         input_hook: str = "ln2.hook_normalized", output_hook: str = "hook_mlp_out",
                         dictionary_id: str | None = None, progress: bool = True,
                         train: Callable[..., TrainResult] | None = None, **options: Any) -> SetTrainResult:
    """One transcoder per layer of ``layers`` (``all``, ``0-5``, ``0,2``), saved as one set.

    ``options`` are :func:`train_dictionary`'s (``d_sae``/``expansion``, ``k``, ``tokens``,
    ``corpus``, ``options={"activation": "relu", "skip": True}``...), the same for every
    layer. ``train`` replaces ``train_dictionary`` (tests, a data-parallel runner)."""
    from featurelens.core.training.api import train_dictionary

    for hook in (input_hook, output_hook):
        if hook.startswith("blocks.") or not hook:
            raise FeaturelensError(f"A transcoder set names its hooks inside a block (ln2.hook_normalized, "
                                   f"hook_mlp_out), not {hook!r}; drop the 'blocks.N.' part.")
    output = Path(output).expanduser()
    chosen = layer_list(layers, backend.n_layers)
    manifest = output / MANIFEST
    if manifest.is_file():
        _check_same(manifest, chosen, input_hook, output_hook)
    output.mkdir(parents=True, exist_ok=True)
    results: dict[int, TrainResult] = {}
    for number, layer in enumerate(chosen, 1):
        with phase(f"train: transcoder {number}/{len(chosen)} (layer {layer})", enabled=progress):
            results[layer] = (train or train_dictionary)(
                backend=backend, hookpoint=f"blocks.{layer}.{input_hook}",
                hookpoint_out=f"blocks.{layer}.{output_hook}", output=output / f"layer_{layer}",
                architecture="transcoder", progress=progress,
                dictionary_id=f"{dictionary_id}.layer{layer}" if dictionary_id else None, **options)
    already = manifest.is_file()
    if not already:
        write_manifest(output, {layer: f"layer_{layer}" for layer in chosen}, input_hook=input_hook,
                       output_hook=output_hook, model_id=backend.model_id, dictionary_id=dictionary_id)
    return SetTrainResult(output, results, already and all(r.already_done for r in results.values()))


def _check_same(manifest: Path, layers: list[int], input_hook: str, output_hook: str) -> None:
    data = json.loads(manifest.read_text(encoding="utf-8"))
    recorded = sorted(int(l) for l in data.get("layers", {}))
    if recorded != layers or data.get("input_hook") != input_hook or data.get("output_hook") != output_hook:
        raise FeaturelensError(
            f"{manifest.parent} holds a transcoder set of layers {recorded} ({data.get('input_hook')} -> "
            f"{data.get('output_hook')}); choose a new --output, or delete it to train this one.")
