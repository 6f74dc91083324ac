"""The extraction stage: corpus -> model -> hookpoint -> dictionary -> feature store.

:func:`extract` validates everything it can before touching the store (model,
hookpoint, dictionary width, context length, a first batch of corpus windows), then
streams batches through the backend and the dictionary into :class:`ExtractionState`.
Every checkpoint commits one shard of sequences together with ``runs.progress`` naming
the accumulator checkpoint file; the features and examples are written once, at the
end, in one transaction. Rerunning the same command after a kill resumes from the last
checkpoint and produces the same store as a run that was never interrupted.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

import polars as pl
import pyarrow as pa
import torch

import featurelens
from featurelens.core.dictionaries.loading import check_width, load_dictionary
from featurelens.core.errors import FeaturelensError
from featurelens.core.host.protocols import ModelBackendBase, declared
from featurelens.core.extraction import resume
from featurelens.core.extraction.accumulators import QUANTILE_LEVELS
from featurelens.core.extraction.logit_effects import choose_mode, defined, logit_effects
from featurelens.core.extraction.packing import Window, outlier_mask, pack, special_mask
from featurelens.core.extraction.quantile_sampling import quantile_bins
from featurelens.core.extraction.state import (
    ExtractionState,
    Settings,
    _one_cpu_thread,
    encode,
    encode_set,
    state_device,
)
from featurelens.core.extraction.writer import (
    TokenText,
    example_rows,
    feature_rows,
    sequence_rows,
)
from featurelens.core.lazy_logits import PENDING, pending_marker
from featurelens.core.progress import phase
from featurelens.core.progress import progress as show_progress
from featurelens.core.store.argument import StoreLike, using_store
from featurelens.core.store.database import Store

#: Features whose rows and examples are built and written at once (bounds the final write's memory).
FEATURE_CHUNK = 4096
#: DuckDB's memory while the final rows are written (its buffer pool otherwise grows with them).
WRITE_MEMORY = "1GB"
#: Windows buffered before their sequences are written even if no checkpoint is due
#: (harmless for resuming: sequence rows are idempotent and removed by _undo).
SEQUENCE_FLUSH = 2048


@dataclass
class ExtractResult:
    """What an extraction did."""

    run_id: str
    dictionary_id: str
    corpus_id: str
    model_id: str
    n_windows: int
    n_tokens: int
    resumed_from: int  #: batches already done when this call started (0: fresh)
    already_done: bool
    seconds: float
    stream_seconds: float = 0.0  #: reading the corpus through model, dictionary and accumulators
    finish_seconds: float = 0.0  #: logit effects and the final writes
    model_seconds: float = 0.0  #: of stream_seconds, in the forward pass and the dictionary encode
    skipped_files: int = 0  #: non-UTF-8 files left out (only with skip_invalid)


def dictionary_id_of(dictionary: Any, model_id: str, hookpoint: str) -> str:
    """A stable id: declared by the dictionary, or derived from its weights."""
    declared = getattr(dictionary, "dictionary_id", None) or dictionary.config.get("dictionary_id")
    if declared:
        return str(declared)
    if dictionary.architecture == "identity":
        return f"identity:{model_id}:{hookpoint}"
    digest = hashlib.sha256(dictionary.architecture.encode())
    for name, tensor in sorted(dictionary.state_dict().items()):
        digest.update(name.encode())
        # the tensor's own buffer, hashed in place (a bytes copy would double a wide
        # dictionary's memory for a moment)
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return f"{dictionary.architecture}-{digest.hexdigest()[:16]}"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _batches(windows: Iterator[Window], size: int) -> Iterator[list[Window]]:
    while True:
        batch = list(itertools.islice(windows, size))
        if not batch:
            return
        yield batch


@dataclass(frozen=True)
class ExtractSpec:
    """What to extract: the model, hookpoint, dictionary, corpus and the sizes of the
    statistics and examples kept per feature. Everything that shapes the store's rows
    (how the run is executed is passed to :func:`extract` beside it)."""

    #: Where the dictionary reads the model; None (or ``blocks.*...``) for a transcoder set,
    #: which reads every layer's own hookpoint.
    hookpoint: str | None
    model: str = "smollm2"
    dictionary: str = "identity"
    corpus: str = "stdlib"
    tokens: int = 20000
    batch_size: int = 16
    context: int = 64
    top_k: int = 50
    n_quantile: int = 50
    quantile_bins_count: int = 10
    n_random: int = 50
    prepend_bos: bool = True
    include_special: bool = False
    exclude_outlier_norm: float | None = None
    fold_final_norm: bool = True
    dtype: str = "float32"
    device: str = "auto"
    backend: str = "hf"
    text_field: str | None = None
    skip_invalid: bool = False
    seed: int = 0
    #: The name the store keeps the dictionary under (``--name``); None keeps its id.
    dictionary_name: str | None = None
    #: Which corpus documents to read: ``heldout`` (never trained on), ``train`` or ``all``.
    split: str = "heldout"
    #: Which features get logit effects: ``auto``, ``all``, ``fired`` (those that fired here),
    #: ``lazy`` (each when first needed) or ``none`` (see :func:`logit_effects.choose_mode`).
    logit_effects: str = "auto"


@dataclass
class BatchReducer:
    """The per-batch work of an extraction: model, hookpoint, dictionary and what to exclude.

    The in-process loop and every Ray worker (featurelens.scale) call the same object, so
    a sharded run folds exactly the same batches in exactly the same way.
    """

    lm: Any
    sae: Any
    hookpoint: str
    context: int
    specials: set[int]
    exclude_outlier_norm: float | None

    def __call__(self, state: ExtractionState, batch: list[Window]) -> float:
        """Fold one batch of windows into ``state``; return the seconds in model + encode."""
        lm = self.lm
        sae_dtype = next((p.dtype for p in self.sae.parameters()), torch.float32)
        ids = torch.tensor([w.tokens for w in batch], dtype=torch.long, device=lm.device)
        with torch.no_grad():
            model_start = time.perf_counter()
            layers = getattr(self.sae, "hookpoints", None)  # a transcoder set reads every layer
            if layers:
                read = lm.run(ids, layers)
                acts = read[layers[0]]
                codes = encode_set(self.sae, {h: read[h].to(sae_dtype) for h in layers})
            else:
                acts = lm.run(ids, [self.hookpoint])[self.hookpoint]
                codes = encode(self.sae, acts.to(sae_dtype))
            _sync(lm.device)
            seconds = time.perf_counter() - model_start
            excluded = special_mask(ids, self.specials) | outlier_mask(acts, self.exclude_outlier_norm)
            seq_ids = torch.tensor([w.sequence_id for w in batch], dtype=torch.long, device=lm.device)
            state.accumulate(codes, len(batch), self.context, seq_ids, excluded)
        return seconds


@dataclass
class Plan:
    """Everything an extraction decides before it opens the store (shared with featurelens.scale)."""

    lm: Any
    sae: Any
    source: Any
    corpus_id: str
    dict_id: str
    n_windows: int
    settings: Settings
    config: dict[str, Any]
    run: str
    batches: Iterator[list[Window]]
    reduce: BatchReducer
    #: Where the dictionary reads: ``spec.hookpoint``, or a transcoder set's ``blocks.*.<hook>``.
    hookpoint: str


def settings_of(spec: ExtractSpec) -> Settings:
    """The accumulators' sizes for ``spec``: a function, so a Ray worker started before
    the driver's :func:`prepare` builds the very same state."""
    return Settings(top_k=spec.top_k, n_quantile=spec.n_quantile, quantile_bins=spec.quantile_bins_count,
                    n_random=spec.n_random, seed=spec.seed)


def special_ids(include_special: bool, tokenizer: Any) -> set[int]:
    """Token ids whose positions are excluded (the tokenizer's special tokens, unless kept)."""
    return set() if include_special else set(tokenizer.all_special_ids)


def prepare(spec: ExtractSpec, *, model_obj: Any = None, dictionary_obj: Any = None) -> Plan:
    """Load and check model, dictionary and corpus; derive the run id. The store is not touched.

    ``spec.split`` picks the corpus documents read (:mod:`featurelens.core.corpus.split`):
    by default the held-out ones, which no dictionary trained here has seen.
    """
    from featurelens.core.corpus.resolve import resolve_corpus
    from featurelens.core.corpus.split import split_corpus
    from featurelens.core.host.manager import create

    choose_mode(spec.logit_effects, 0, "cpu")  # an unknown mode is refused before anything loads
    if spec.tokens < 1 or spec.batch_size < 1 or spec.top_k < 0 or spec.n_quantile < 0 or spec.n_random < 0:
        raise FeaturelensError("--tokens, --batch-size must be positive and example counts >= 0; fix the option.")
    lm = model_obj or create("model_backend", spec.backend, spec.model, dtype=spec.dtype, device=spec.device)
    check_context = declared(lm, "check_context", ModelBackendBase)
    if callable(check_context):
        check_context(spec.context)
    sae = dictionary_obj or load_dictionary(spec.dictionary, backend=lm, hookpoint=spec.hookpoint)
    hookpoint = reading_hookpoint(sae, spec.hookpoint, lm, spec.dictionary)
    if spec.dictionary_name:
        sae.dictionary_id = spec.dictionary_name
    sae = sae.to(lm.device).eval()
    source = split_corpus(resolve_corpus(spec.corpus, field=spec.text_field, skip_invalid=spec.skip_invalid),
                          spec.split)
    corpus_id = "corpus-" + hashlib.sha256(json.dumps(
        [source.fingerprint(), lm.model_id, spec.context, spec.prepend_bos]).encode()).hexdigest()[:16]
    dict_id = dictionary_id_of(sae, lm.model_id, hookpoint)
    n_windows = math.ceil(spec.tokens / spec.context)
    settings = settings_of(spec)
    config = {
        "model_id": lm.model_id, "hookpoint": hookpoint, "dictionary_id": dict_id,
        "corpus_id": corpus_id, "corpus": spec.corpus, "split": source.describe(), "windows": n_windows,
        "context": spec.context, "batch_size": spec.batch_size, "prepend_bos": spec.prepend_bos,
        "include_special": spec.include_special, "exclude_outlier_norm": spec.exclude_outlier_norm,
        "fold_final_norm": spec.fold_final_norm, "dtype": spec.dtype,
        "quantile_levels": list(QUANTILE_LEVELS), **asdict(settings),
    }
    logit_mode = choose_mode(spec.logit_effects, sae.d_sae, lm.device)
    if logit_mode == "lazy" and not defined(sae, lm):
        logit_mode = "none"  # nothing would ever be pending
    if logit_mode == "lazy" and spec.dictionary == "identity" and sae.architecture != "identity":
        # a dictionary object passed without its path: nothing to reload it from later
        if spec.logit_effects == "lazy":
            raise FeaturelensError("--logit-effects lazy reloads the dictionary later, but this one was passed "
                                   "as an object; set ExtractSpec.dictionary to its path.")
        logit_mode = "all"
    if logit_mode != "all":  # only then: runs of the default keep their ids
        config["logit_effects"] = logit_mode
    run = resume.run_id(config)
    if logit_mode == "lazy":  # where to compute them later; kept out of the run id (paths move)
        from featurelens.core.model.causal_lm import model_argument

        recorded = declared(lm, "source", ModelBackendBase)
        model = model_argument(recorded) if isinstance(recorded, str) else spec.model
        config[PENDING] = pending_marker(model, spec.backend, spec.dtype, spec.dictionary, hookpoint,
                                         spec.fold_final_norm)
    windows = pack(source, lm.tokenizer, context=spec.context, prepend_bos=spec.prepend_bos, max_windows=n_windows)
    batches = _batches(windows, spec.batch_size)
    first = next(batches)  # an empty or unreadable corpus fails here, before the store is opened
    batches = itertools.chain([first], batches)
    reducer = BatchReducer(lm, sae, hookpoint, spec.context, special_ids(spec.include_special, lm.tokenizer),
                           spec.exclude_outlier_norm)
    return Plan(lm, sae, source, corpus_id, dict_id, n_windows, settings, config, run, batches, reducer, hookpoint)


def reading_hookpoint(sae: Any, asked: str | None, lm: Any, spec: str) -> str:
    """Where ``sae`` reads ``lm``, its width checked: ``asked``, or a transcoder set's own
    ``blocks.*.<hook>`` (every layer's input hookpoint checked against the model)."""
    layers = getattr(sae, "hookpoints", None)
    if layers:
        if asked is not None and asked != sae.hookpoint and "*" not in asked:
            raise FeaturelensError(f"{spec} is a transcoder set reading {sae.hookpoint}; leave out --hookpoint "
                                   "(each layer reads its own) or pass that name.")
        for name in layers:
            check_width(sae, lm.hookpoint_width(name), name, spec)
        return str(sae.hookpoint)
    if asked is None or "*" in asked:
        raise FeaturelensError(f"{spec} reads one hookpoint; pass --hookpoint (e.g. blocks.6.hook_resid_post).")
    check_width(sae, lm.hookpoint_width(asked), asked, spec)
    return asked


def extract(spec: ExtractSpec, *, store: StoreLike = None, checkpoint_seconds: float = 60.0,
            checkpoint_every: int | None = None, progress: bool = True, model_obj: Any = None,
            dictionary_obj: Any = None) -> ExtractResult:
    """Fill the store with the features of ``spec.dictionary`` at ``spec.hookpoint`` of ``spec.model``.

    ``model_obj``/``dictionary_obj`` let a caller that already loaded them (the
    ``featurelens run`` job, the benchmark) skip loading. Raises
    :class:`FeaturelensError` with one sentence on bad input, with the store untouched.
    """
    started = time.perf_counter()
    plan = prepare(spec, model_obj=model_obj, dictionary_obj=dictionary_obj)
    lm, sae, source, corpus_id, dict_id = plan.lm, plan.sae, plan.source, plan.corpus_id, plan.dict_id
    n_windows, settings, config, run, batches = (plan.n_windows, plan.settings, plan.config, plan.run,
                                                 plan.batches)

    with using_store(store) as db:  # a path, or a store the caller holds open
        folder = resume.checkpoint_dir(db.path, run)
        row = db.execute("SELECT status, progress FROM runs WHERE run_id = ?", [run])
        if row and row[0][0] == "done":
            resume.remove_checkpoints(folder)
            return ExtractResult(run, dict_id, corpus_id, lm.model_id, 0, 0, 0, True,
                                 time.perf_counter() - started)
        state = ExtractionState(sae.d_sae, spec.context, settings, state_device(sae.d_sae, settings, lm.device))
        done_batches, seq_floor = resume.restore(db, folder, row[0][1] if row else None, state,
                                                 corpus_id, state.device)
        text = TokenText(lm.tokenizer)
        pending: list[Window] = []
        bar = show_progress(n_windows * spec.context,
                            initial=min(done_batches * spec.batch_size, n_windows) * spec.context,
                            unit="tok", unit_scale=True, desc=f"extract {plan.hookpoint}", enabled=progress)
        last_checkpoint = stream_start = time.monotonic()
        model_seconds = checkpoint_cost = 0.0
        n_seen = done_batches * spec.batch_size
        try:
            for index, batch in enumerate(batches):
                if index < done_batches:
                    continue
                model_seconds += plan.reduce(state, batch)
                pending.extend(batch)
                n_seen += len(batch)
                bar.update(len(batch) * spec.context)
                # time-based checkpoints never take more than 5 % of the run
                due = (index + 1) % checkpoint_every == 0 if checkpoint_every else (
                    time.monotonic() - last_checkpoint >= max(checkpoint_seconds, 20 * checkpoint_cost))
                if not due and len(pending) >= SEQUENCE_FLUSH:  # bound memory between checkpoints
                    db.insert("sequences", sequence_rows(pending, corpus_id, lm.model_id, text),
                              on_conflict="ignore")
                    pending = []
                if due:
                    before = time.monotonic()
                    _checkpoint(db, folder, run, config, state, index + 1, seq_floor, pending,
                                corpus_id, lm.model_id, text)
                    pending = []
                    last_checkpoint = time.monotonic()
                    checkpoint_cost = last_checkpoint - before
        except FeaturelensError:
            bar.close()
            _undo(db, folder, run, corpus_id, seq_floor)
            raise
        bar.close()
        finish_start = time.monotonic()
        _finish(db, folder, run, config, lm, sae, dict_id, plan.hookpoint, spec.dictionary, corpus_id,
                state, pending, text, spec.fold_final_norm, n_seen, progress,
                config.get("logit_effects", "all"), release_dictionary=dictionary_obj is None)
        finish_end = time.monotonic()
    return ExtractResult(run, dict_id, corpus_id, lm.model_id, n_seen, state.stats.n_tokens,
                         done_batches, False, time.perf_counter() - started,
                         finish_start - stream_start, finish_end - finish_start, model_seconds,
                         int(getattr(source, "skipped", 0)))


def _checkpoint(db: Store, folder: Path, run: str, config: dict[str, Any], state: ExtractionState,
                batches_done: int, seq_floor: int, pending: list[Window], corpus_id: str,
                model_id: str, text: TokenText) -> None:
    """Save the state file, then commit this shard's sequences and the progress that names it."""
    name = resume.save_checkpoint(folder, batches_done, state.state_dict())
    progress = json.dumps({"batches_done": batches_done, "checkpoint": name, "seq_floor": seq_floor})
    with db.transaction():
        db.insert("sequences", sequence_rows(pending, corpus_id, model_id, text), on_conflict="ignore")
        db.execute(
            "INSERT INTO runs (run_id, kind, config, status, progress, featurelens_version) "
            "VALUES (?, 'extract', ?, 'running', ?, ?) ON CONFLICT (run_id) DO UPDATE SET "
            "progress = excluded.progress, status = 'running'",
            [run, json.dumps(config), progress, featurelens.__version__],
        )
    resume.prune_checkpoints(folder, name)


def _undo(db: Store, folder: Path, run: str, corpus_id: str, seq_floor: int) -> None:
    """Remove what this run wrote, so bad input leaves the store as it was."""
    with db.transaction():
        db.execute("DELETE FROM sequences WHERE corpus_id = ? AND sequence_id >= ?", [corpus_id, seq_floor])
        db.execute("DELETE FROM runs WHERE run_id = ?", [run])
    resume.remove_checkpoints(folder)


def _finish(db: Store, folder: Path, run: str, config: dict[str, Any], lm: Any, sae: Any, dict_id: str, hookpoint: str,
            spec: str, corpus_id: str, state: ExtractionState, pending: list[Window],
            text: TokenText, fold_final_norm: bool, n_windows: int, progress: bool = True,
            logit_mode: str = "all", release_dictionary: bool = False) -> None:
    """Write features, examples, model and dictionary rows, then mark the run done.

    With ``release_dictionary`` (the extraction loaded the dictionary itself, so nothing
    else holds it), its weights are dropped once the logit effects and its row are
    computed: the write phase then holds the accumulated state without the weights beside
    it (4.8 GB at a million features).
    """
    logits = None
    if logit_mode not in ("none", "lazy"):  # lazy: NULL now, the run's config says they are pending
        fired = (None if logit_mode == "all"
                 else torch.nonzero(state.stats.fire_count > 0).flatten().cpu())
        which = "every feature" if fired is None else f"the {fired.numel()} features that fired"
        with phase(f"extract: logit effects of {which}", enabled=progress), torch.no_grad():
            logits = logit_effects(sae, lm, fold_final_norm=fold_final_norm, features=fired)
    model_row = pl.DataFrame([{
        "model_id": lm.model_id, "backend": declared(lm, "backend_name", ModelBackendBase),
        "source": declared(lm, "source", ModelBackendBase) or lm.model_id,
        "n_layers": lm.n_layers, "d_model": lm.d_model,
        "vocab_size": declared(lm, "vocab_size", ModelBackendBase),
        "config": json.dumps({"dtype": declared(lm, "dtype", ModelBackendBase),
                              "family": getattr(declared(lm, "family", ModelBackendBase), "name", None),
                              # the browser hides these in examples unless asked
                              "special_tokens": sorted(getattr(lm.tokenizer, "all_special_tokens", [])),
                              **(declared(lm, "provenance", ModelBackendBase) or {})},
                             default=str),
    }])
    dictionary_row = pl.DataFrame([{
        "dictionary_id": dict_id, "model_id": lm.model_id, "hookpoint": hookpoint,
        "architecture": sae.architecture, "d_in": sae.d_in, "d_sae": sae.d_sae,
        "format": getattr(sae, "format", None), "source": None if spec == "identity" else spec,
        "config": json.dumps(sae.config, default=str),
    }])
    with db.transaction():
        db.insert("sequences", sequence_rows(pending, corpus_id, lm.model_id, text), on_conflict="ignore")
        db.insert("models", model_row, on_conflict="ignore")
        db.insert("dictionaries", dictionary_row, on_conflict="ignore")
        if hasattr(sae, "layer_rows"):  # a transcoder set: its layers, queryable in SQL
            db.insert("transcoder_layers", pl.DataFrame(sae.layer_rows(dict_id)), on_conflict="ignore")
        db.execute("DELETE FROM examples WHERE dictionary_id = ?", [dict_id])
        db.execute("DELETE FROM features WHERE dictionary_id = ?", [dict_id])
    if release_dictionary:
        sae.to("meta")  # shapes stay, the weights' memory goes back
    write_rows(db, dict_id, corpus_id, state, logits, text, progress)
    with db.transaction():
        db.execute(
            "INSERT INTO runs (run_id, kind, config, status, progress, featurelens_version, finished_at) "
            "VALUES (?, 'extract', ?, 'done', ?, ?, now()) ON CONFLICT (run_id) DO UPDATE SET "
            "status = 'done', progress = excluded.progress, finished_at = now()",
            [run, json.dumps(config), json.dumps({"windows": n_windows, "tokens": state.stats.n_tokens}), featurelens.__version__],
        )
    resume.remove_checkpoints(folder)


def write_rows(db: Store, dict_id: str, corpus_id: str, state: ExtractionState,
               logits: tuple[torch.Tensor, ...] | None, text: TokenText, progress: bool = True) -> None:
    """Every feature's row and examples, ``FEATURE_CHUNK`` features a transaction.

    One transaction per chunk: DuckDB holds a transaction's new rows in memory until it
    commits (about 12 KB a feature, its 50 random windows alone), which a million features
    cannot afford, and its buffer pool would otherwise keep every written block (up to 80 %
    of RAM), hence ``WRITE_MEMORY``. The run is marked done only after the last chunk, so a
    kill in between resumes from the checkpoint and rewrites the dictionary's rows from
    scratch (the caller deleted them first: each (feature, kind, rank) is written once).
    One thread each for torch and DuckDB: the work is many small tensor ops and appends,
    whose thread hand-offs cost more than they save (benchmarks/example_write.py).
    """
    settings, n_features = state.settings, state.stats.fire_count.numel()
    previous, threads = db.execute("SELECT current_setting('memory_limit'), current_setting('threads')")[0]
    db.execute(f"SET memory_limit = '{WRITE_MEMORY}'")
    db.execute("SET threads = 1")
    try:
        with _one_cpu_thread(torch.device("cpu")), show_progress(
                n_features, desc="extract: writing features and examples", unit="feature",
                enabled=progress) as bar:
            for first in range(0, n_features, FEATURE_CHUNK):
                last = min(first + FEATURE_CHUNK, n_features)
                chunk_logits = None if logits is None else tuple(t[first:last] for t in logits)
                with db.transaction():
                    db.insert("features", feature_rows(dict_id, corpus_id, state.stats, QUANTILE_LEVELS,
                                                       chunk_logits, text, first, last))
                    _write_examples(db, dict_id, corpus_id, state, first, last, settings.quantile_bins,
                                    settings.n_random)
                bar.update(last - first)
    finally:
        db.execute(f"SET memory_limit = '{previous}'")
        db.execute(f"SET threads = {int(threads)}")


def _write_examples(db: Store, dict_id: str, corpus_id: str, state: ExtractionState, first: int,
                    last: int, n_bins: int, n_random: int) -> None:
    """Features ``first..last-1``'s top, quantile and random rows, in one insert."""
    # top and quantile rows come only from features that kept a window (most of a wide
    # dictionary never fires); random windows are all zeros, so no activations are built
    top_features, top_seq, top_acts, top_order = state.top.ranked_live(first, last)
    top = example_rows(dict_id, corpus_id, "top", top_seq, top_acts, top_order, features=top_features)
    del top_acts
    res_features, res_seq, res_acts, _ = state.reservoir.ranked_live(first, last)
    order, bins = quantile_bins(res_acts.amax(dim=2), res_seq >= 0, n_bins, tiebreak=res_seq)
    quantile = example_rows(dict_id, corpus_id, "quantile", res_seq, res_acts, order, bins, features=res_features)
    del res_acts
    rand_seq, _ = state.pool.choose(first, last, n_random)
    random = example_rows(dict_id, corpus_id, "random", rand_seq, state.context, first_feature=first)
    db.insert("examples", pa.concat_tables([top, quantile, random]))
