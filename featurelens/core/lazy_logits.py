"""Logit effects computed when first needed, then stored: ``--logit-effects lazy``.

A lazy extraction writes NULL effects and records, in its run's config under
:data:`PENDING`, where they come from: the model (backend, argument, dtype), the
dictionary, the hookpoint and the final-norm fold. :func:`fill` then computes the
effects of a selection's features that still lack them, a chunk at a time:

- only those features' decoder rows are read, sliced from the weights file when the
  dictionary's format can (``decoder_rows`` on a format: SAELens, featurelens's own);
  other formats, and dictionaries with load-time overrides, are loaded whole once;
- the model's unembedding is folded exactly as the eager path folds it, and the rows go
  through the same per-chunk product (:func:`featurelens.core.extraction.logit_effects.effects_of_rows`) in chunks of
  the same size, so the stored values equal those of ``--logit-effects all``;
- each chunk is one ``UPDATE`` from an Arrow table, committed on its own: a killed fill
  keeps what it wrote, and running it again computes only what is still missing (a filled
  selection costs one count query and loads nothing);
- the product runs on a worker thread (torch leaves the GIL while it multiplies) while
  the calling thread reads the next chunk's keys and decoder rows and decodes and writes
  the previous chunk, so on a CPU the store work hides behind the arithmetic; every store
  call stays on the calling thread's connection, and at most two chunks' effects are held.

:func:`ensure` is what the explain job and the exports call: it fills only dictionaries a
lazy extraction marked, so a ``fired`` or ``none`` choice stays as the user made it;
``featurelens logits`` fills any selection explicitly.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from featurelens.core.errors import FeaturelensError
from featurelens.core.progress import progress as show_progress
from featurelens.core.selection import Selection, feature_keys
from featurelens.core.store.database import Store

if TYPE_CHECKING:  # torch is imported by the functions that compute: checking for pending work needs none
    import torch

    from featurelens.core.extraction.writer import TokenText

#: The run-config key of a lazy extraction: where its logit effects are computed from.
PENDING = "logit_effects_pending"
#: Features computed and written at once (one UPDATE, one commit).
FILL_CHUNK = 4096


def pending_marker(model: str, backend: str, dtype: str, dictionary: str, hookpoint: str,
                   fold_final_norm: bool) -> dict[str, Any]:
    """What :func:`fill` needs to load, recorded by a lazy extraction (paths made absolute,
    so a fill from another directory finds them)."""
    return {"model": _absolute(model), "backend": backend, "dtype": dtype, "dictionary": _absolute(dictionary),
            "hookpoint": hookpoint, "fold_final_norm": bool(fold_final_norm)}


def _absolute(spec: str) -> str:
    from featurelens.core.model.embedded import EMBEDDED_ALIASES

    if spec == "identity" or spec in EMBEDDED_ALIASES:
        return spec
    path = Path(spec).expanduser()
    return str(path.resolve()) if path.exists() else spec


@dataclass(frozen=True)
class Source:
    """Where one dictionary's logit effects are computed from."""

    dictionary_id: str
    model: str
    backend: str
    dtype: str
    dictionary: str
    hookpoint: str
    fold_final_norm: bool


@dataclass
class FillResult:
    """What a fill did."""

    filled: int  #: features whose effects were computed and stored
    dictionaries: list[str]  #: those it computed effects for
    seconds: float  #: the whole fill, model loads included
    load_seconds: float = 0.0  #: of which loading models


def _latest_run(store: Store, dictionary_id: str) -> dict[str, Any] | None:
    rows = store.execute(
        "SELECT config FROM runs WHERE kind = 'extract' AND status = 'done' "
        "AND json_extract_string(config, '$.dictionary_id') = ? ORDER BY finished_at DESC NULLS LAST LIMIT 1",
        [dictionary_id])
    return json.loads(rows[0][0]) if rows else None


def lazy_source(store: Store, dictionary_id: str) -> Source | None:
    """The source a lazy extraction recorded for ``dictionary_id``; None when its latest
    extraction chose another mode."""
    config = _latest_run(store, dictionary_id)
    marker = (config or {}).get(PENDING)
    if not isinstance(marker, dict):
        return None
    return Source(dictionary_id, **{k: marker[k] for k in ("model", "backend", "dtype", "dictionary",
                                                           "hookpoint", "fold_final_norm")})


def recorded_source(store: Store, dictionary_id: str) -> Source:
    """The source of any extracted dictionary: the lazy marker, or what its latest run and
    its ``models``/``dictionaries`` rows recorded (for stores extracted with ``fired``/``none``)."""
    lazy = lazy_source(store, dictionary_id)
    if lazy is not None:
        return lazy
    config = _latest_run(store, dictionary_id)
    rows = store.execute(
        "SELECT d.source, d.hookpoint, m.backend, m.source FROM dictionaries d JOIN models m USING (model_id) "
        "WHERE d.dictionary_id = ?", [dictionary_id])
    if config is None or not rows:
        raise FeaturelensError(f"The store has no finished extraction of dictionary {dictionary_id!r}; "
                               "extract it before filling its logit effects.")
    source, hookpoint, backend, model_source = rows[0]
    from featurelens.core.model.causal_lm import model_argument

    return Source(dictionary_id, model_argument(model_source), backend or "hf", config.get("dtype", "float32"),
                  source or "identity", hookpoint, bool(config.get("fold_final_norm", True)))


def missing_counts(store: Store, selection: Selection) -> dict[str, int]:
    """Features of the selection without logit effects, by dictionary (``limit`` ignored)."""
    condition, params = selection.condition()
    rows = store.execute(f"SELECT dictionary_id, count(*) FROM features WHERE ({condition}) "
                         "AND top_logits IS NULL GROUP BY 1 ORDER BY 1", params)
    return {str(d): int(n) for d, n in rows}


class DecoderRows:
    """A dictionary's decoder rows by feature id: sliced from its file where its format can,
    else from the whole dictionary, loaded once."""

    def __init__(self, source: Source, lm: Any):
        from featurelens.core.dictionaries.pretrained import OVERRIDES_KEY, resolve
        from featurelens.core.host.manager import get_registry

        self.source, self.lm = source, lm
        self._whole: "torch.Tensor | None" = None
        self._slicer: Any = None
        if source.dictionary == "identity":
            return
        local, provenance = resolve(source.dictionary)
        self.path = Path(local).expanduser()
        if not self.path.exists():
            raise FeaturelensError(
                f"The dictionary {self.path} that {source.dictionary_id} was extracted from is missing; put it "
                "back there, or pass its new place with featurelens logits --dictionary-path.")
        if provenance.get(OVERRIDES_KEY):  # load-time changes to the weights: only the loader applies them
            return
        registry = get_registry()
        for name in registry.names("dictionary_format"):
            fmt = registry.get("dictionary_format", name).create()
            if fmt.detect(str(self.path)):
                self._slicer = getattr(fmt, "decoder_rows", None)
                break

    def __call__(self, ids: "torch.Tensor") -> "torch.Tensor":
        if self._slicer is not None:
            rows = self._slicer(str(self.path), ids)
            if rows is not None:
                return rows
            self._slicer = None  # this file cannot be sliced: load it whole from now on
        if self._whole is None:
            from featurelens.core.dictionaries.loading import load_dictionary

            hookpoint = None if "*" in self.source.hookpoint else self.source.hookpoint
            dictionary = load_dictionary(self.source.dictionary, backend=self.lm, hookpoint=hookpoint)
            try:
                self._whole = dictionary.decoder_directions()
            except NotImplementedError:
                raise FeaturelensError(
                    f"Dictionary {self.source.dictionary_id} gives no decoder directions, so it has no logit "
                    "effects; there is nothing to fill.") from None
        return self._whole[ids.to(self._whole.device)]


def _load_model(source: Source, device: str) -> Any:
    from featurelens.core.host.manager import create
    from featurelens.core.model.embedded import EMBEDDED_ALIASES

    path = Path(source.model)
    if source.model not in EMBEDDED_ALIASES and path.is_absolute() and not path.exists():
        raise FeaturelensError(
            f"The model folder {source.model} that {source.dictionary_id} was extracted with is missing; put it "
            "back there, or pass its new place with featurelens logits --model.")
    return create("model_backend", source.backend, source.model, dtype=source.dtype, device=device)


def fill(store: Store, selection: Selection, *, lazy_only: bool = False, model: str | None = None,
         dictionary: str | None = None, device: str = "auto", progress: bool = True,
         chunk: int = FILL_CHUNK) -> FillResult:
    """Compute and store the logit effects of the selection's features that lack them.

    ``lazy_only``: only dictionaries a lazy extraction marked (what callers that merely need
    effects use); otherwise every dictionary in the selection. ``model``/``dictionary``
    replace the recorded places (files moved since the extraction). Raises
    :class:`FeaturelensError` (one sentence) before writing anything when a file is missing.
    """
    started = time.perf_counter()
    counts = missing_counts(store, selection)
    sources: list[Source] = []
    for dictionary_id in counts:
        source = lazy_source(store, dictionary_id) if lazy_only else recorded_source(store, dictionary_id)
        if source is not None:
            sources.append(_replace(source, model, dictionary))
    total = sum(counts[s.dictionary_id] for s in sources)
    if selection.limit is not None:
        total = min(total, selection.limit)
    filled = 0
    if not sources:
        return FillResult(0, [], time.perf_counter() - started)
    models: dict[tuple[str, str, str], Any] = {}
    loading = 0.0
    with show_progress(total, desc="logit effects", unit="feature", enabled=progress) as bar:
        for source in sources:
            key = (source.backend, source.model, source.dtype)
            if key not in models:
                load_started = time.perf_counter()
                models = {key: _load_model(source, device)}  # one model held at a time
                loading += time.perf_counter() - load_started
            filled += _fill_dictionary(store, source, models[key], selection, chunk, bar)
    return FillResult(filled, [s.dictionary_id for s in sources], time.perf_counter() - started, loading)


def _replace(source: Source, model: str | None, dictionary: str | None) -> Source:
    from dataclasses import replace

    return replace(source, model=_absolute(model) if model else source.model,
                   dictionary=_absolute(dictionary) if dictionary else source.dictionary)


def _fill_dictionary(store: Store, source: Source, lm: Any, selection: Selection, chunk: int, bar: Any) -> int:
    import torch

    from featurelens.core.extraction.logit_effects import N_TOKENS
    from featurelens.core.extraction.writer import TokenText

    rows_of = DecoderRows(source, lm)
    with torch.no_grad():
        w_u = lm.unembedding(fold_final_norm=source.fold_final_norm).to(lm.device)
    n = min(N_TOKENS, w_u.shape[1])
    text = TokenText(lm.tokenizer)
    per_dictionary = Selection(selection.where, source.dictionary_id, selection.limit)
    filled = 0
    computing: "tuple[torch.Tensor, Future[tuple[torch.Tensor, ...]]] | None" = None
    with ThreadPoolExecutor(1, thread_name_prefix="logit-product") as worker:
        for page in feature_keys(store, per_dictionary, chunk):
            ids = _still_missing(store, source.dictionary_id, [f for _, f in page])
            if not ids.numel():
                continue
            directions = rows_of(ids)
            if directions.shape[-1] != lm.d_model:
                raise FeaturelensError(
                    f"Dictionary {source.dictionary_id} writes vectors of width {directions.shape[-1]}, not the "
                    f"model's d_model {lm.d_model}, so it has no logit effects; there is nothing to fill.")
            following = (ids, worker.submit(_effects, directions, w_u, n))
            if computing is not None:  # written while the worker multiplies the following chunk
                filled += _store_chunk(store, source.dictionary_id, computing, text, bar)
            computing = following
        if computing is not None:
            filled += _store_chunk(store, source.dictionary_id, computing, text, bar)
    return filled


def _effects(directions: "torch.Tensor", w_u: "torch.Tensor", n: int) -> "tuple[torch.Tensor, ...]":
    """One chunk's ``(top_ids, top_values, bottom_ids, bottom_values)``: the eager path's
    product, in its row steps."""
    import torch

    from featurelens.core.extraction.logit_effects import chunk_rows, effects_of_rows

    step = chunk_rows(w_u.shape[1])
    with torch.no_grad():  # grad mode is per thread: the worker sets its own
        parts = [effects_of_rows(directions[i:i + step], w_u, n) for i in range(0, directions.shape[0], step)]
    return tuple(torch.cat([p[j] for p in parts]) for j in range(4))


def _store_chunk(store: Store, dictionary_id: str, computed: "tuple[torch.Tensor, Future[tuple[torch.Tensor, ...]]]",
                 text: "TokenText", bar: Any) -> int:
    ids, effects = computed
    _write(store, dictionary_id, ids, effects.result(), text)
    bar.update(ids.numel())
    return int(ids.numel())


def _still_missing(store: Store, dictionary_id: str, features: list[int]) -> "torch.Tensor":
    import torch

    low, high = min(features), max(features)
    view = "_logit_fill_keys"
    store.con.register(view, pa.table({"feature": pa.array(features, pa.int32())}))
    try:
        rows = store.con.execute(
            f"SELECT f.feature FROM features f JOIN {view} k USING (feature) WHERE f.dictionary_id = ? "
            f"AND f.feature BETWEEN {int(low)} AND {int(high)} AND f.top_logits IS NULL ORDER BY 1",
            [dictionary_id]).fetchall()
    finally:
        store.con.unregister(view)
    return torch.tensor([r[0] for r in rows], dtype=torch.long)


def _write(store: Store, dictionary_id: str, ids: "torch.Tensor", effects: "tuple[torch.Tensor, ...]",
           text: "TokenText") -> None:
    """One UPDATE for the chunk, from an Arrow table, in its own transaction."""
    from featurelens.core.extraction.writer import logit_columns

    table = pa.table({"feature": pa.array(ids.int().numpy()), **logit_columns(effects, text)})
    view = "_logit_fill_rows"
    low, high = int(ids[0]), int(ids[-1])
    with store.transaction():
        store.con.register(view, table)
        try:
            store.con.execute(
                f"UPDATE features SET top_logits = r.top_logits, top_logit_values = r.top_logit_values, "
                f"bottom_logits = r.bottom_logits, bottom_logit_values = r.bottom_logit_values FROM {view} r "
                f"WHERE features.dictionary_id = ? AND features.feature = r.feature "
                f"AND features.feature BETWEEN {low} AND {high}", [dictionary_id])
        finally:
            store.con.unregister(view)


def page_effects(dictionary: Any, feature: int, backend: Any, fold_final_norm: bool) -> dict[str, list[Any]]:
    """One feature's logit effects as a page shows them (the ``features`` columns), computed
    from a loaded dictionary with the eager path's product and not stored: what ``serve
    --model``, which holds the store read-only, shows for a feature still pending."""
    import torch

    from featurelens.core.extraction.logit_effects import N_TOKENS, effects_of_rows
    from featurelens.core.extraction.writer import TokenText

    with torch.no_grad():
        w_u = backend.unembedding(fold_final_norm=fold_final_norm).to(backend.device)
        row = dictionary.decoder_directions()[feature:feature + 1]
        top_ids, top_values, bottom_ids, bottom_values = effects_of_rows(row, w_u, min(N_TOKENS, w_u.shape[1]))
    text = TokenText(backend.tokenizer)
    return {"top_logits": text(top_ids[0].tolist()), "top_logit_values": top_values[0].double().tolist(),
            "bottom_logits": text(bottom_ids[0].tolist()), "bottom_logit_values": bottom_values[0].double().tolist()}


def pending_count(store: Store, selection: Selection) -> int:
    """Features of the selection whose effects a lazy extraction left to compute (read-only)."""
    return sum(n for dictionary_id, n in missing_counts(store, selection).items()
               if lazy_source(store, dictionary_id) is not None)


def ensure_at(path: str | Path | None, selection: Selection, *, progress: bool = True) -> int:
    """:func:`ensure` for a store given by its path (the exports, which read it read-only):
    it is opened for writing only when something is pending."""
    with Store.open(path, read_only=True) as store:
        if not pending_count(store, selection):
            return 0
    with Store.open(path) as store:
        return ensure(store, selection, progress=progress)


def ensure(store: Store, selection: Selection, *, progress: bool = True) -> int:
    """Fill the effects a lazy extraction left pending in ``selection``; returns how many
    were computed (0, loading nothing, when none are pending)."""
    return fill(store, selection, lazy_only=True, progress=progress).filled
