"""The model and transcoder set a graph is built from, named as on the command line.

``--transcoders`` is the set's dictionary id in the store (its file and model come from
the ``dictionaries`` and ``models`` rows that extraction or ``dictionaries import``
wrote), or a set folder / name that the registered formats read. A set named by path
gets the id extraction would give it, so a graph of a set extracted earlier joins that
set's features, explanations and scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featurelens.core.errors import FeaturelensError
from featurelens.core.transcoder_set import TranscoderSet


@dataclass
class LoadedSet:
    backend: Any  #: the hf model backend (``.model``, ``.tokenizer``, ``.model_id``)
    transcoders: TranscoderSet
    dictionary_id: str
    source: str | None  #: what the set was loaded from (recorded in ``dictionaries.source``)


def load_transcoder_set(spec: str, *, model: str | None = None, store_path: str | Path | None = None,
                        device: str = "auto", backend: Any = None) -> LoadedSet:
    """Load the set named ``spec`` and its model (see the module docstring)."""
    from featurelens.core.dictionaries.loading import load_dictionary
    from featurelens.core.extraction.extractor import dictionary_id_of
    from featurelens.core.host.manager import create
    from featurelens.core.dictionaries.pretrained import is_named
    from featurelens.interventions.targets import stored_dictionary

    row = stored_dictionary(store_path, spec)
    if row is not None:
        source, model = row["spec"], model or row["model"]
    elif is_named(spec) or Path(spec).expanduser().exists():
        source = spec
    else:
        raise FeaturelensError(
            f"--transcoders {spec!r} is neither a dictionary id in the store nor an existing set folder or "
            "name; train one (featurelens train --architecture transcoder --layers all) or pass its folder.")
    lm = backend or create("model_backend", "hf", model or "smollm2", dtype="float32", device=device)
    loaded = load_dictionary(source, backend=lm, hookpoint=None)
    if not isinstance(loaded, TranscoderSet):
        raise FeaturelensError(
            f"{spec} is a single {loaded.architecture} dictionary, not a transcoder set; a graph needs one "
            "transcoder per layer (featurelens train --architecture transcoder --layers all).")
    if getattr(loaded, "cross", None):
        raise FeaturelensError(
            f"{spec} is a cross-layer transcoder set; graphs are built for per-layer sets so far: pass a set "
            "with one transcoder per layer.")
    loaded = loaded.to(lm.device).eval()
    dictionary_id = spec if row is not None else dictionary_id_of(loaded, lm.model_id, loaded.hookpoint)
    return LoadedSet(backend=lm, transcoders=loaded, dictionary_id=dictionary_id, source=source)


def record_set(store: Any, loaded: LoadedSet) -> None:
    """Make sure the set has its ``dictionaries`` and ``transcoder_layers`` rows."""
    from featurelens.core.dictionaries.evaluation import register_dictionary

    loaded.transcoders.dictionary_id = loaded.dictionary_id
    register_dictionary(store, loaded.transcoders, model_id=loaded.backend.model_id,
                        hookpoint=str(loaded.transcoders.hookpoint), source=loaded.source)
