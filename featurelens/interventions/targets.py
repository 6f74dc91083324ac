"""Which model and dictionary an intervention runs on.

A dictionary is named either by its id in the feature store (then its hookpoint, file
and model come from the ``dictionaries`` and ``models`` rows extraction wrote) or as
extraction takes it: ``identity`` or a path, with ``--hookpoint`` and ``--model``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featurelens.core.errors import FeaturelensError
from featurelens.core.host.protocols import ModelBackendBase, declared, steering_missing


@dataclass
class Target:
    """A loaded model backend and dictionary, and the store id of that dictionary."""

    backend: Any
    dictionary: Any
    dictionary_id: str
    hookpoint: str


def model_spec_from_source(source: str | None, model_id: str) -> str:
    """What ``--model`` reloads a stored model from (its ``models.source``)."""
    if not source:
        return model_id
    if source.startswith("embedded:"):
        return source.split(":", 1)[1]
    if source.startswith("hub:"):
        return source.split(":", 1)[1]
    return source


def stored_dictionary(store_path: str | Path | None, dictionary: str) -> dict[str, Any] | None:
    """The ``dictionaries`` row (with its model's source) whose id is ``dictionary``, if any."""
    from featurelens.core.store.database import Store, default_store_path

    path = Path(store_path) if store_path else default_store_path()
    if not path.exists():
        return None
    with Store.open(path, read_only=True) as store:
        rows = store.execute(DICTIONARY_ROW_SQL, [dictionary])
    return dictionary_row(rows[0]) if rows else None


#: A stored dictionary's hookpoint, file and model (parameter: the dictionary id).
DICTIONARY_ROW_SQL = ("SELECT d.hookpoint, d.source, d.model_id, m.source AS model_source FROM dictionaries d "
                      "LEFT JOIN models m USING (model_id) WHERE d.dictionary_id = ?")


def dictionary_row(values: tuple[Any, ...]) -> dict[str, Any]:
    """A :data:`DICTIONARY_ROW_SQL` result as :func:`load_target` takes it."""
    hookpoint, source, model_id, model_source = values
    return {"hookpoint": hookpoint, "spec": source or "identity", "model_id": model_id,
            "model": model_spec_from_source(model_source, model_id)}


def load_target(dictionary: str, *, model: str | None = None, hookpoint: str | None = None,
                store_path: str | Path | None = None, dtype: str = "float32", device: str = "auto",
                backend: Any = None, row: dict[str, Any] | None = None,
                backend_name: str = "hf") -> Target:
    """Load the model and dictionary named on the command line (module docstring).

    ``backend`` reuses a loaded model; ``backend_name``: the registered model backend to load
    one with (``--backend``; it must offer the steering members,
    :data:`~featurelens.core.host.protocols.STEERING_MEMBERS`); ``row`` is the stored
    dictionary's :func:`stored_dictionary` row when the caller already read it (the browser).
    """
    from featurelens.core.dictionaries.loading import load_dictionary
    from featurelens.core.extraction.extractor import dictionary_id_of
    from featurelens.core.host.manager import create

    if row is None:
        row = stored_dictionary(store_path, dictionary)
    if row is not None:
        spec, hookpoint = row["spec"], hookpoint or row["hookpoint"]
        model = model or row["model"]
    else:
        from featurelens.core.dictionaries.pretrained import is_named

        if dictionary != "identity" and not is_named(dictionary) and not Path(dictionary).expanduser().exists():
            raise FeaturelensError(
                f"Unknown dictionary {dictionary!r}: it is not a dictionary id in the store, 'identity', "
                "a name (hf:<repo>[/<folder>], saelens:<release>/<sae_id>) or a saved dictionary's path; see "
                "featurelens sql \"SELECT dictionary_id FROM dictionaries\" or pass a path.")
        if not hookpoint:
            raise FeaturelensError(
                f"--hookpoint is needed with --dictionary {dictionary} (it is not in the store); "
                "pass e.g. --hookpoint blocks.6.hook_resid_post.")
        spec = dictionary
    lm = backend or create("model_backend", backend_name, model or "smollm2", dtype=dtype, device=device)
    missing = steering_missing(lm)
    if missing:
        name = backend_name if backend is None else declared(lm, "backend_name", ModelBackendBase)
        raise FeaturelensError(
            f"The model backend {name!r} cannot be steered: it offers no {', '.join(missing)} "
            "(editing activations hooks the backend's torch module; see docs/plugins.md, Model backends); "
            "use --backend hf, or a backend built on featurelens.api.CausalLM.")
    if "*" not in hookpoint:  # a transcoder set (blocks.*.<hook>) checks each layer's hookpoint as it loads
        lm.site(hookpoint)  # an unknown hookpoint is one sentence before anything loads
    loaded = load_dictionary(spec, backend=lm, hookpoint=hookpoint).to(lm.device).eval()
    if loaded.hookpoint is None:
        loaded.hookpoint = hookpoint
    dictionary_id = dictionary if row is not None else dictionary_id_of(loaded, lm.model_id, hookpoint)
    return Target(lm, loaded, dictionary_id, hookpoint)
