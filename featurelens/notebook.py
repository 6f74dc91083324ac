"""featurelens in a notebook: a model and a dictionary by name, and a prompt's feature
activations token by token as a polars frame.

    import featurelens as fl
    model = fl.load_model("smollm2")
    sae = fl.load_dictionary("identity", model, hookpoint="blocks.6.hook_resid_post")
    fl.feature_activations(model, sae, "def add(a, b):")

Names resolve as on the command line: a model is ``smollm2``, a folder or a hub id; a
dictionary is ``identity``, a folder in any registered format, or the name a store
records (``dictionaries import --name``, ``featurelens run``). Every function that takes
a store takes an open :class:`~featurelens.core.store.database.Store` or its path.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from featurelens.core.errors import FeaturelensError
from featurelens.core.store.argument import StoreLike, store_path, using_store

if TYPE_CHECKING:
    import polars as pl

    from featurelens.core.dictionaries.base import Dictionary


def load_model(name: str = "smollm2", *, dtype: str = "float32", device: str = "auto") -> Any:
    """The model backend for ``name`` (``smollm2``, a transformers folder or a hub id)."""
    from featurelens.core.host.manager import create

    return create("model_backend", "hf", name, dtype=dtype, device=device)


def _probe_hookpoint(path: str) -> str | None:
    """The hookpoint a saved dictionary declares, read through the format that detects it."""
    from featurelens.core.host.manager import get_registry

    registry = get_registry()
    for name in registry.names("dictionary_format"):
        fmt = registry.get("dictionary_format", name).create()
        if fmt.detect(path):
            return getattr(fmt.load(path), "hookpoint", None)
    return None


def load_dictionary(spec: str, model: Any, *, hookpoint: str | None = None, store: StoreLike = None) -> "Dictionary":
    """The dictionary ``spec`` names, on ``model``'s device, checked against its hookpoint.

    ``spec`` is ``identity``, a folder, or a name recorded in ``store`` (an open store or
    its path; default ``./featurelens.duckdb`` when it exists). ``hookpoint`` defaults to
    the one the store or the dictionary's own config records."""
    from featurelens.core.dictionaries.loading import load_dictionary as load
    from featurelens.core.dictionaries.naming import resolve_in
    from featurelens.core.store.database import Store
    from featurelens.core.store.location import default_store_path

    rows: list[tuple[Any, ...]] = []
    if isinstance(store, Store) or (store_path(store) or default_store_path()).exists():
        target = store if isinstance(store, Store) else (store_path(store) or default_store_path())
        with using_store(target, read_only=not isinstance(store, Store)) as db:
            rows = db.execute("SELECT dictionary_id, source, hookpoint FROM dictionaries")
    source, name = resolve_in(spec, rows)
    recorded = [row[2] for row in rows if name is not None and row[0] == name]
    if source != "identity" and not Path(source).expanduser().exists():
        raise FeaturelensError(f"{spec!r} is neither 'identity' nor an existing file or folder, nor a "
                               "dictionary name the store records; pass a path, or import it first "
                               "(featurelens dictionaries import PATH --name NAME).")
    hookpoint = hookpoint or (recorded[0] if recorded else None)
    if hookpoint is None and source != "identity" and Path(source).expanduser().exists():
        hookpoint = _probe_hookpoint(str(Path(source).expanduser()))
    if hookpoint is None:
        raise FeaturelensError(f"Which hookpoint does {spec!r} read? Pass hookpoint=, e.g. "
                               "hookpoint='blocks.6.hook_resid_post'.")
    dictionary = load(source, backend=model, hookpoint=hookpoint)
    if name is not None:
        dictionary.dictionary_id = name
    dictionary.hookpoint = dictionary.hookpoint or hookpoint
    return dictionary.to(model.device).eval()


def feature_activations(model: Any, dictionary: "Dictionary | str", prompt: str, *,
                        hookpoint: str | None = None, features: Sequence[int] | None = None,
                        top: int | None = None, prepend_bos: bool = True, store: StoreLike = None) -> "pl.DataFrame":
    """Every token of ``prompt`` with the features active on it, as a polars frame.

    Columns: ``position``, ``token`` (decoded on its own), ``token_id``, ``feature`` (Int32,
    like the store's, so it joins with ``explanations``),
    ``activation``; one row per (token, active feature), strongest first within a token.
    ``features`` keeps only those features, ``top`` the strongest ``top`` per token.
    ``model`` may be a name (loaded here) and ``dictionary`` a name or path (see
    :func:`load_dictionary`). The BOS token is included when ``prepend_bos``, as in
    extraction, but it is a special token: its activations are usually outliers.
    """
    import polars as pl
    import torch

    from featurelens.core.extraction.writer import TokenText

    if isinstance(model, str):
        model = load_model(model)
    if isinstance(dictionary, str):
        dictionary = load_dictionary(dictionary, model, hookpoint=hookpoint, store=store)
    hookpoint = hookpoint or dictionary.hookpoint
    if not hookpoint:
        raise FeaturelensError("The dictionary does not say which hookpoint it reads; pass hookpoint=.")
    tokenizer = model.tokenizer
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    if prepend_bos and tokenizer.bos_token_id is not None:
        ids = [tokenizer.bos_token_id] + ids
    if not ids:
        raise FeaturelensError("The prompt is empty; pass some text.")
    with torch.no_grad():
        acts = model.run(torch.tensor([ids], device=model.device), [hookpoint])[hookpoint][0]
        sparse = dictionary.encode_sparse(acts.to(next(dictionary.parameters(), acts).dtype))
    values, indices = sparse.values.float().cpu(), sparse.indices.cpu()
    tokens = TokenText(tokenizer)(ids)
    positions = torch.arange(len(ids)).unsqueeze(1).expand_as(indices)
    frame = pl.DataFrame({
        "position": positions.reshape(-1).numpy().astype("int32"),
        "feature": indices.reshape(-1).numpy().astype("int32"),  # as the store's features.feature
        "activation": values.reshape(-1).numpy(),
    }).filter(pl.col("activation") > 0)
    if features is not None:
        frame = frame.filter(pl.col("feature").is_in(list(features)))
    frame = frame.sort(["position", "activation"], descending=[False, True])
    if top is not None:
        frame = frame.group_by("position", maintain_order=True).head(top)
    lookup = pl.DataFrame({"position": list(range(len(ids))), "token": tokens, "token_id": ids},
                          schema={"position": pl.Int32, "token": pl.Utf8, "token_id": pl.Int64})
    return frame.join(lookup, on="position", how="left").select(
        "position", "token", "token_id", "feature", "activation")
