"""featurelens's own format: ``featurelens_dictionary.json`` + ``weights.safetensors``.

It stores any built-in (or plugin) learner exactly: the registry name, the sizes and
the options its factory takes, and the full state dict, so ``load`` rebuilds the
same object. Trained dictionaries are written in it; other formats are exports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import featurelens
from featurelens.core.dictionaries.base import Dictionary
from featurelens.core.errors import FeaturelensError
from featurelens.plugins.formats.common import (
    atomic_folder,
    build,
    decoder_slice,
    parse_dtype,
    read_json,
    read_safetensors,
    save_safetensors,
    write_json,
)
from featurelens.plugins.formats.strict import config_str

MANIFEST = "featurelens_dictionary.json"
WEIGHTS = "weights.safetensors"
#: Built-in learners whose decoder directions are their ``W_dec`` rows (:meth:`NativeFormat.decoder_rows`).
W_DEC_ARCHITECTURES = frozenset({"topk", "batchtopk", "relu", "jumprelu", "transcoder"})


class NativeFormat:
    name = "featurelens"

    def detect(self, path: str) -> bool:
        return (Path(path) / MANIFEST).is_file()

    def load(self, path: str, *, dtype: Any = None, device: str | None = None, **_: Any) -> Dictionary:
        folder = Path(path)
        manifest = read_json(folder / MANIFEST, "featurelens")
        missing = [k for k in ("architecture", "d_in", "d_sae", "config") if k not in manifest]
        if missing:
            raise FeaturelensError(
                f"{folder / MANIFEST} lacks {', '.join(missing)}; it was not written by featurelens."
            )
        if not isinstance(manifest["config"], dict):
            raise FeaturelensError(f"{folder / MANIFEST} has a config that is not a JSON object; "
                                   "it was not written by featurelens.")
        if not isinstance(manifest["architecture"], str):
            raise FeaturelensError(f"{folder / MANIFEST} gives architecture={manifest['architecture']!r}; "
                                   "it must be a dictionary learner's name such as topk.")
        state = read_safetensors(folder / WEIGHTS, "featurelens")
        options = dict(manifest["config"])
        options.update(hookpoint=config_str(manifest.get("hookpoint"), "hookpoint", folder / MANIFEST),
                       model_id=config_str(manifest.get("model_id"), "model_id", folder / MANIFEST))
        model = build(manifest["architecture"], manifest["d_in"], manifest["d_sae"],
                      options, state, dtype=parse_dtype(dtype, folder), source=folder / MANIFEST)
        expected = set(model.state_dict())
        if expected - set(state):
            raise FeaturelensError(
                f"{folder / WEIGHTS} lacks {', '.join(sorted(expected - set(state)))}; "
                "the checkpoint is incomplete, save it again."
            )
        model.format = self.name
        return model.to(device) if device else model

    def decoder_rows(self, path: str, features: Any) -> Any:
        """Rows ``features`` of ``decoder_directions()`` without loading the dictionary, for the
        built-in SAEs and transcoders (their directions are ``W_dec``); None for any other
        learner, whose directions only its own code knows."""
        folder = Path(path)
        manifest = read_json(folder / MANIFEST, "featurelens")
        if manifest.get("architecture") not in W_DEC_ARCHITECTURES or not isinstance(manifest.get("d_sae"), int):
            return None
        return decoder_slice(folder / WEIGHTS, "W_dec", manifest["d_sae"], features, None, "featurelens")

    def save(self, dictionary: Any, path: str) -> None:
        save_native(dictionary, Path(path))


def save_native(dictionary: Dictionary, path: Path, extra: dict[str, Any] | None = None) -> None:
    """Write ``dictionary`` atomically; ``extra`` is added to the manifest (e.g. training info)."""
    manifest = {
        "architecture": dictionary.architecture, "d_in": dictionary.d_in, "d_sae": dictionary.d_sae,
        "d_out": dictionary.d_out, "config": dictionary.config, "hookpoint": dictionary.hookpoint,
        "model_id": dictionary.model_id, "featurelens_version": featurelens.__version__,
        **(extra or {}),
    }
    with atomic_folder(path) as tmp:
        save_safetensors(dictionary.state_dict(), tmp / WEIGHTS)
        write_json(manifest, tmp / MANIFEST)
