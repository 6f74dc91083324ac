"""Turning a ``--dictionary`` argument into a loaded :class:`Dictionary` at a hookpoint.

``identity`` needs only the hookpoint's width; a path is offered to every registered
dictionary format (SAELens, sparsify, ...) until one recognises it. Either way the
dictionary's input width is checked against the hookpoint here, once, so a mismatch is
one sentence instead of a shape error deep inside a matmul.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from featurelens.core.dictionaries.base import Dictionary
from featurelens.core.dictionaries.naming import trained_name
from featurelens.core.errors import FeaturelensError

#: Files that hold pickles: refused by name when no format takes them (dictionary_learning's
#: ae.pt and the pt_file format's torch.save state dicts are read by core/torch_archive.py's
#: opcode walker, never unpickled).
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin")


def load_dictionary(spec: str, *, backend: Any, hookpoint: str | None, **options: Any) -> Dictionary:
    """The dictionary named by ``spec`` (``identity`` or a path), checked against ``hookpoint``.

    :param spec: ``identity``, a file or folder that a registered dictionary format
        detects, or a name: ``hf:<repo>[/<subfolder>]``, ``saelens:<release>/<sae_id>``
        (see :mod:`featurelens.core.dictionaries.pretrained`).
    :param backend: a loaded :class:`~featurelens.core.host.protocols.ModelBackend`; gives the
        hookpoint's width.
    :param hookpoint: where the dictionary reads the model; None (or a ``blocks.*...``
        name) for a transcoder set, whose layers each read their own hookpoint.
    :param options: passed to the format's ``load``.
    """
    from featurelens.core.host.manager import get_registry

    registry = get_registry()
    whole_set = hookpoint is None or "*" in hookpoint
    width = None if whole_set else backend.hookpoint_width(hookpoint)
    if spec == "identity":
        if width is None:
            raise FeaturelensError("The identity dictionary reads one hookpoint; pass --hookpoint.")
        dictionary = registry.get("dictionary_learner", "identity").create(
            width, hookpoint=hookpoint, model_id=backend.model_id)
        return dictionary
    from featurelens.core.dictionaries.pretrained import apply_overrides, load_options, resolve

    local, provenance = resolve(spec)
    path = Path(local).expanduser()
    if not path.exists():
        raise FeaturelensError(
            f"--dictionary {spec!r} is neither 'identity' nor an existing file or folder; "
            "pass identity or the path of a saved dictionary."
        )
    formats = registry.names("dictionary_format")
    for name in formats:
        fmt = registry.get("dictionary_format", name).create()
        if fmt.detect(str(path)):
            chosen = {**options, **accepted(fmt, load_options(provenance))}
            dictionary = fmt.load(str(path), **with_hookpoint(fmt, chosen, None if whole_set else hookpoint))
            if not getattr(dictionary, "format", None):
                dictionary.format = name
            dictionary.config.update(apply_overrides(dictionary, provenance, spec))
            layers = getattr(dictionary, "hookpoints", None)
            for site in layers or ([] if whole_set else [hookpoint]):
                check_width(dictionary, backend.hookpoint_width(site), site, str(path))
            if whole_set and not layers:
                raise FeaturelensError(f"{path} is a dictionary at one hookpoint; pass --hookpoint for it "
                                       "(only a transcoder set reads every layer by itself).")
            if dictionary.hookpoint is None:
                dictionary.hookpoint = hookpoint
            name = None if getattr(dictionary, "dictionary_id", None) else trained_name(path)
            if name:  # `featurelens train --name` (or its generated name) travels with the folder
                dictionary.dictionary_id = name
            return dictionary
    refuse_pickle(path)
    raise FeaturelensError(
        f"No dictionary format recognises {path} (known formats: {', '.join(formats) or 'none'}); "
        "pass a SAELens/sparsify/... checkpoint folder, or install the plugin for its format."
    )


def refuse_pickle(path: Path) -> None:
    """One sentence for a pickle file no format took: it is refused by name, never opened."""
    if path.is_file() and path.suffix.lower() in PICKLE_SUFFIXES:
        raise FeaturelensError(
            f"{path} is a pickle file, and featurelens never unpickles a checkpoint (it could run code); "
            "save the weights as safetensors (SAELens, sparsify or featurelens format), or pass the folder "
            "of a dictionary_learning ae.pt with its config.json.")


def check_width(dictionary: Dictionary, width: int, hookpoint: str, source: str) -> None:
    """Raise one sentence if ``dictionary`` does not read activations of ``width``."""
    if dictionary.d_in != width:
        raise FeaturelensError(
            f"The dictionary {source} reads vectors of width {dictionary.d_in}, but {hookpoint} "
            f"of this model has width {width}; pick the hookpoint and model it was trained on."
        )


def accepted(fmt: Any, options: dict[str, Any]) -> dict[str, Any]:
    """Those of ``options`` that the format's ``load`` names (SAELens's table gives a
    Llama Scope folder its input scale; another format the folder might be is not asked)."""
    import inspect

    params = inspect.signature(fmt.load).parameters
    return {k: v for k, v in options.items() if k in params}


def with_hookpoint(fmt: Any, options: dict[str, Any], hookpoint: str | None) -> dict[str, Any]:
    """``options`` plus ``hookpoint`` when the format's ``load`` takes it (a folder holding
    several hookpoints, like a sparsify root, picks the one asked for)."""
    import inspect

    if hookpoint is None or "hookpoint" in options:
        return options
    params = inspect.signature(fmt.load).parameters
    if "hookpoint" in params or any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return {**options, "hookpoint": hookpoint}
    return options
