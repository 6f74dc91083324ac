"""CLI commands of the extraction area: ``featurelens extract`` and ``featurelens models``."""

from __future__ import annotations

from pathlib import Path

import click

import featurelens
from featurelens.core.cli.options import store_option

featurelens_api = 1


@featurelens.hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(extract_command)
    cli.add_command(logits_command)
    cli.add_command(models_group)


@click.command("extract")
@click.option("--model", default="smollm2", show_default=True,
              help="smollm2 (embedded), a local transformers folder, or a hub id (needs network).")
@click.option("--backend", default="hf", show_default=True,
              help="Model backend that reads --model: hf, or one a plugin registers "
                   "(featurelens plugins list).")
@click.option("--hookpoint", default=None, help="e.g. blocks.6.hook_resid_post, or a module path "
              "(left out for a transcoder set: each layer reads its own).")
@click.option("--dictionary", default="identity", show_default=True,
              help="identity (one feature per neuron), the path of a saved dictionary, the name "
                   "of one recorded in the store (dictionaries import), hf:<repo>[/<subfolder>] or "
                   "saelens:<release>/<sae_id>.")
@click.option("--corpus", default="stdlib", show_default=True,
              help="stdlib (Python's standard library source), a path, or source:location.")
@click.option("--tokens", type=int, default=20000, show_default=True, help="Tokens to read.")
@click.option("--split", type=click.Choice(["heldout", "train", "all"]), default="heldout", show_default=True,
              help="Corpus documents to read: held out from training (shuffled), the training ones, "
                   "or all in corpus order.")
@store_option
@click.option("--batch-size", type=int, default=16, show_default=True, help="Windows per forward pass.")
@click.option("--context", type=int, default=64, show_default=True, help="Tokens per window.")
@click.option("--top-k", type=int, default=50, show_default=True, help="Top examples per feature.")
@click.option("--quantile-examples", type=int, default=50, show_default=True,
              help="Examples sampled across activation quantiles per feature.")
@click.option("--quantile-bins", type=int, default=10, show_default=True)
@click.option("--random-examples", type=int, default=50, show_default=True,
              help="Random non-activating examples per feature.")
@click.option("--bos/--no-bos", default=True, show_default=True, help="Start each window with BOS.")
@click.option("--include-special", is_flag=True, help="Allow BOS/EOS/padding tokens as examples.")
@click.option("--exclude-outlier-norm", type=float, default=None,
              help="Exclude positions whose activation norm is above this multiple of the median "
                   "(attention sinks), e.g. 10.")
@click.option("--fold-final-norm/--no-fold-final-norm", default=True, show_default=True,
              help="Fold the final norm's scale into the unembedding for logit effects.")
@click.option("--logit-effects", type=click.Choice(["auto", "all", "fired", "lazy", "none"]), default="auto",
              show_default=True,
              help="Which features get their promoted/suppressed tokens (decoder row x unembedding), and when. "
                   "all: every feature, after the stream, in chunks on the model's device (0.6-2.7 ms per "
                   "feature on 2 CPU cores: about half an hour at a million features); fired: only features "
                   "that fired in this corpus; lazy: none now (the final phase costs nothing), each feature's "
                   "computed and stored when an explainer, an export or `featurelens logits` first needs it; "
                   "none: never. Default auto = all on a GPU or up to 16,384 features (10-45 s on 2 "
                   "CPU cores), lazy above on a CPU, where most of a wide dictionary's effects would be "
                   "computed for features nobody opens.")
@click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]), default="float32",
              show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto (CUDA when present), cpu, cuda:0...")
@click.option("--text-field", default=None, help="JSONL field / Parquet column holding the text.")
@click.option("--skip-invalid", is_flag=True, help="Skip non-UTF-8 files instead of stopping.")
@click.option("--checkpoint-seconds", type=float, default=60.0, show_default=True,
              help="How often progress is committed (a kill loses at most this much work).")
@click.option("--checkpoint-every", type=int, default=None, help="Commit progress every N batches instead.")
@click.option("--executor", type=click.Choice(["inprocess", "ray"]), default="inprocess", show_default=True,
              help="ray: shard the corpus over Ray workers (pip install 'featurelens[ray]'); same store.")
@click.option("--address", default=None,
              help="Ray cluster to join (auto, HOST:PORT); default: start a local one. Only with --executor ray.")
@click.option("--workers", type=int, default=2, show_default=True,
              help="Ray workers (one GPU each when the cluster has GPUs). Only with --executor ray.")
@click.option("--worker-threads", type=int, default=1, show_default=True,
              help="CPUs (torch threads) per Ray worker. Only with --executor ray.")
@click.option("--effects", is_flag=True,
              help="Then measure each feature's ablation effect (see featurelens effects).")
def extract_command(model: str, backend: str, hookpoint: str | None, dictionary: str, corpus: str, tokens: int,
                    store_path: Path | None, batch_size: int, context: int, top_k: int,
                    quantile_examples: int, quantile_bins: int, random_examples: int, bos: bool,
                    include_special: bool, exclude_outlier_norm: float | None, fold_final_norm: bool,
                    dtype: str, device: str, text_field: str | None, skip_invalid: bool,
                    checkpoint_seconds: float, checkpoint_every: int | None, split: str, executor: str,
                    address: str | None, workers: int, worker_threads: int, effects: bool,
                    logit_effects: str) -> None:
    """Read a model at a hookpoint over a corpus and store every feature's statistics and examples.

    Killed at any moment, the same command resumes where the last checkpoint left off.
    """
    from featurelens.core.dictionaries.naming import resolve_stored_name
    from featurelens.core.extraction import ExtractSpec, extract

    if address is not None and executor != "ray":
        raise click.UsageError("--address needs --executor ray.")
    dictionary, name = resolve_stored_name(dictionary, store_path)
    spec = ExtractSpec(
        dictionary_name=name,
        model=model, backend=backend, hookpoint=hookpoint, dictionary=dictionary, corpus=corpus, tokens=tokens,
        batch_size=batch_size, context=context, top_k=top_k, n_quantile=quantile_examples,
        quantile_bins_count=quantile_bins, n_random=random_examples, prepend_bos=bos,
        include_special=include_special, exclude_outlier_norm=exclude_outlier_norm,
        fold_final_norm=fold_final_norm, dtype=dtype, device=device, text_field=text_field,
        skip_invalid=skip_invalid, split=split, logit_effects=logit_effects,
    )
    if executor == "ray":
        from featurelens.scale import (
            extract_on_ray,  # same spec and store, the stream sharded
        )

        result = extract_on_ray(spec, store=store_path, checkpoint_seconds=checkpoint_seconds,
                                checkpoint_every=checkpoint_every, address=address, workers=workers,
                                threads=worker_threads)
    else:
        result = extract(spec, store=store_path, checkpoint_seconds=checkpoint_seconds,
                         checkpoint_every=checkpoint_every)
    if effects:
        from featurelens.interventions.effects import compute_effects
        from featurelens.interventions.targets import load_target

        target = load_target(dictionary, model=model, hookpoint=hookpoint, store_path=store_path,
                             dtype=dtype, device=device)
        measured = compute_effects(store_path, target)
        click.echo(f"Measured ablation effects of {measured.measured} feature(s) "
                   f"({measured.skipped} already stored).", err=True)
    if result.already_done:
        click.echo(f"Already extracted (run {result.run_id}); dictionary {result.dictionary_id}.")
        return
    resumed = f", resumed after {result.resumed_from} batches" if result.resumed_from else ""
    if result.skipped_files:
        click.echo(f"Skipped {result.skipped_files} file(s) that are not UTF-8 (--skip-invalid).", err=True)
    click.echo(f"Extracted {result.n_tokens} tokens in {result.n_windows} windows into dictionary "
               f"{result.dictionary_id} (run {result.run_id}{resumed}, {result.seconds:.1f} s).")


@click.command("logits")
@store_option
@click.option("--dictionary", "dictionary_id", default=None, help="Only this dictionary's features.")
@click.option("--where", default=None, help='SQL condition over the features table, e.g. "fire_count > 0".')
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most this many features.")
@click.option("--model", default=None,
              help="The model's new place, if it moved since the extraction (default: the recorded one).")
@click.option("--dictionary-path", default=None,
              help="The dictionary's new place, if it moved since the extraction (default: the recorded one).")
@click.option("--device", default="auto", show_default=True, help="auto (CUDA when present), cpu, cuda:0...")
def logits_command(store_path: Path | None, dictionary_id: str | None, where: str | None, limit: int | None,
                   model: str | None, dictionary_path: str | None, device: str) -> None:
    """Compute and store the logit effects of the selected features that lack them.

    For stores extracted with --logit-effects lazy (or fired/none): only the decoder rows of
    the features still missing are read, through the same product as an eager extraction,
    one chunk per commit; run again after a kill, it computes only what is left.
    """
    from featurelens.core.errors import FeaturelensError
    from featurelens.core.lazy_logits import fill
    from featurelens.core.selection import Selection, count_features
    from featurelens.core.store.database import Store
    from featurelens.core.store.location import default_store_path

    path = store_path or default_store_path()
    if not path.exists():  # a mistyped path must not create an empty store
        raise FeaturelensError(f"There is no feature store at {path}; point --store at the store to fill.")
    selection = Selection(where=where, dictionary_id=dictionary_id, limit=limit)
    with Store.open(path) as store:
        if not count_features(store, selection):
            click.echo("No feature matches the selection; nothing to fill.")
            return
        result = fill(store, selection, model=model, dictionary=dictionary_path, device=device)
    if not result.filled:
        click.echo("Every selected feature already has its logit effects; nothing to fill.")
        return
    click.echo(f"Stored the logit effects of {result.filled} feature(s) of {', '.join(result.dictionaries)} "
               f"in {result.seconds:.1f} s.")


@click.group("models")
def models_group() -> None:
    """Models featurelens can load without network."""


@models_group.command("list")
def models_list() -> None:
    """Show the embedded models, whether they are converted and cached, and where."""
    from featurelens.core.model.embedded import embedded_models

    for entry in embedded_models():
        state = "cached" if entry.cached else ("not yet converted" if entry.gguf else "package missing")
        click.echo(f"{entry.name}: {entry.description}")
        click.echo(f"  status: {state}; cache: {entry.cache}")
        if entry.gguf:
            click.echo(f"  source: {entry.gguf}")
    click.echo("Any local transformers folder also works: --model /path/to/model "
               "(hub ids too, when there is network).")
