"""CLI of the dictionary area: ``featurelens train`` and
``featurelens dictionaries list|eval|import|export``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

import featurelens
from featurelens.core.cli.options import store_option
from featurelens.core.errors import FeaturelensError

featurelens_api = 1


@featurelens.hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(train_command)
    cli.add_command(dictionaries_group)


def _parse_options(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``key=value`` pairs; values are read as JSON when they parse (numbers, booleans)."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise FeaturelensError(f"--option {pair!r} is not key=value; write e.g. --option l1_coefficient=5.")
        try:
            options[key] = json.loads(raw)
        except json.JSONDecodeError:
            options[key] = raw
    return options


def _backend(model: str, dtype: str, device: str) -> Any:
    from featurelens.core.host.manager import create

    return create("model_backend", "hf", model, dtype=dtype, device=device)


@click.command("train")
@click.option("--model", default="smollm2", show_default=True,
              help="smollm2 (embedded), a local transformers folder, or a hub id.")
@click.option("--hookpoint", default=None, help="Where to read the model, e.g. blocks.6.hook_resid_post "
              "(with --layers: the hook inside each block, default ln2.hook_normalized).")
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the trained dictionary (rerun the same command to resume).")
@click.option("--layers", default=None, help="Transcoders: train one per layer (all, 0-5, 0,2,4) into one "
              "transcoder set; --hookpoint and --hookpoint-out then name hooks inside each block.")
@click.option("--name", default=None,
              help="Dictionary id in the store [default: generated, e.g. smollm2-l6-topk8x-1a2b3c4d].")
@click.option("--architecture", default="topk", show_default=True,
              help="Dictionary learner: topk, batchtopk, relu, jumprelu, transcoder, or a plugin's.")
@click.option("--expansion", type=int, default=8, show_default=True, help="Features per activation dimension.")
@click.option("--d-sae", type=int, default=None, help="Number of features (overrides --expansion).")
@click.option("--k", type=int, default=32, show_default=True, help="Active features per token (TopK-style).")
@click.option("--hookpoint-out", default=None, help="Transcoders: the hookpoint to predict (e.g. blocks.6.hook_mlp_out; "
              "with --layers: the hook inside each block, default hook_mlp_out).")
@click.option("--corpus", default="stdlib", show_default=True, help="stdlib, a path, or source:location.")
@click.option("--tokens", type=int, default=200_000, show_default=True, help="Training tokens.")
@click.option("--context", type=int, default=64, show_default=True, help="Tokens per window.")
@click.option("--batch-size", type=int, default=None,
              help="Tokens per step [default: tokens / 400, between 256 and 4096].")
@click.option("--lr", type=float, default=None, help="Learning rate [default: 2e-4 / sqrt(d_sae / 16384)].")
@click.option("--buffer-rows", type=int, default=32_768, show_default=True, help="Shuffle buffer size in tokens.")
@click.option("--option", "learner_options", multiple=True, metavar="KEY=VALUE",
              help="Learner option, e.g. l1_coefficient=5, skip=true (repeatable).")
@click.option("--bf16", is_flag=True, help="bfloat16 autocast for the forward and backward passes.")
@click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]), default="float32",
              show_default=True, help="Model dtype.")
@click.option("--device", default="auto", show_default=True, help="auto (CUDA when present), cpu, cuda:0...")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--checkpoint-seconds", type=float, default=60.0, show_default=True,
              help="How often the training state is saved (a kill loses at most this much).")
@click.option("--executor", type=click.Choice(["inprocess", "processes", "ray", "torchrun"]), default="inprocess",
              show_default=True, help="Data-parallel training: local processes, Ray actors (pip install "
              "'featurelens[ray]'), or the ranks torchrun started; same result as one worker.")
@click.option("--workers", type=int, default=2, show_default=True,
              help="Data-parallel workers (one GPU each on GPUs); with processes or ray.")
@click.option("--address", default=None, help="Ray cluster to join (auto, HOST:PORT); default: a local one.")
@click.option("--worker-threads", type=int, default=1, show_default=True, help="Torch threads per worker.")
def train_command(model: str, hookpoint: str | None, output: Path, layers: str | None, name: str | None,
                  architecture: str, expansion: int,
                  d_sae: int | None, k: int, hookpoint_out: str | None, corpus: str, tokens: int,
                  context: int, batch_size: int | None, lr: float | None, buffer_rows: int,
                  learner_options: tuple[str, ...], bf16: bool, dtype: str, device: str, seed: int,
                  checkpoint_seconds: float, executor: str, workers: int, address: str | None,
                  worker_threads: int) -> None:
    """Train a sparse autoencoder or transcoder on a model's activations.

    Killed at any moment, the same command resumes from the last checkpoint.
    """
    from featurelens.core.dictionaries.naming import (
        check_name,
        readable_name,
        settings_key,
    )
    from featurelens.core.training import train_dictionary

    options = _parse_options(learner_options)
    if layers is not None:
        if architecture != "transcoder":
            raise click.UsageError("--layers trains a transcoder set; add --architecture transcoder.")
        if executor != "inprocess":
            raise click.UsageError("--layers trains the layers one after another in this process; "
                                   "drop --executor.")
        _train_set(model=model, hookpoint=hookpoint, hookpoint_out=hookpoint_out, output=output, layers=layers,
                   name=name, expansion=expansion, d_sae=d_sae, k=k, corpus=corpus, tokens=tokens,
                   context=context, batch_size=batch_size, lr=lr, buffer_rows=buffer_rows, options=options,
                   seed=seed, bf16=bf16, dtype=dtype, device=device, checkpoint_seconds=checkpoint_seconds)
        return
    if hookpoint is None:
        raise click.UsageError("Missing option '--hookpoint' (or --layers with --architecture transcoder).")
    if name is None:
        width = f"{d_sae}" if d_sae else f"{expansion}x"
        name = readable_name(model, hookpoint, architecture, width, settings_key({
            "model": model, "hookpoint": hookpoint, "hookpoint_out": hookpoint_out, "architecture": architecture,
            "expansion": expansion, "d_sae": d_sae, "k": k, "corpus": corpus, "tokens": tokens,
            "context": context, "lr": lr, "options": options, "seed": seed}))
    check_name(name)
    runner = None
    if executor != "inprocess":
        from featurelens.core.training.data_parallel import (
            DataParallelRunner,
            rank_device,
        )

        device = rank_device(device) if executor == "torchrun" else device
        runner = DataParallelRunner(workers, executor, address=address, threads=worker_threads,
                                    model={"model": model, "dtype": dtype, "device": device})
    elif address is not None:
        raise click.UsageError("--address needs --executor ray.")
    backend = _backend(model, dtype, device)
    result = _train_or_done(train_dictionary, runner,
        backend=backend, hookpoint=hookpoint, output=output, architecture=architecture,
        expansion=expansion, d_sae=d_sae, k=k, corpus=corpus, tokens=tokens, context=context,
        batch_size=batch_size, lr=lr, buffer_rows=buffer_rows, hookpoint_out=hookpoint_out,
        options=options, seed=seed, bf16=bf16, device=device,
        checkpoint_seconds=checkpoint_seconds, dictionary_id=name)
    if result is None:
        return  # a torchrun rank other than 0: rank 0 saved the dictionary and reports
    shown = ", ".join(f"{key}={value:.4g}" for key, value in result.metrics.items())
    if result.already_done:
        click.echo(f"Already trained: {output} holds a finished {result.dictionary.architecture} "
                   f"dictionary ({shown}); choose another --output to train a new one.")
        return
    resumed = f", resumed at step {result.resumed_from_step}" if result.resumed_from_step else ""
    click.echo(f"Trained {result.dictionary.architecture} ({result.dictionary.d_sae} features) on "
               f"{result.tokens} tokens in {result.steps} steps{resumed}: {shown}. Saved to {output} "
               f"as {name}.")


def _train_set(*, model: str, hookpoint: str | None, hookpoint_out: str | None, output: Path, layers: str,
               name: str | None, dtype: str, device: str, **options: Any) -> None:
    """``train --architecture transcoder --layers ...``: one transcoder per layer, one set."""
    from featurelens.core.dictionaries.naming import check_name, readable_name, settings_key
    from featurelens.core.training.transcoder_sets import train_transcoder_set

    input_hook = hookpoint or "ln2.hook_normalized"
    output_hook = hookpoint_out or "hook_mlp_out"
    if name is None:
        width = f"{options['d_sae']}" if options.get("d_sae") else f"{options['expansion']}x"
        name = readable_name(model, f"layers-{layers}", "transcoderset", width, settings_key({
            "model": model, "layers": layers, "input_hook": input_hook, "output_hook": output_hook,
            **{k: v for k, v in options.items() if k != "checkpoint_seconds"}}))
    check_name(name)
    backend = _backend(model, dtype, device)
    learner = options.pop("options")
    result = train_transcoder_set(backend=backend, output=output, layers=layers, input_hook=input_hook,
                                  output_hook=output_hook, dictionary_id=name, device=device,
                                  options=learner, **options)
    if result.already_done:
        click.echo(f"Already trained: {output} holds a finished transcoder set of layers "
                   f"{', '.join(map(str, result.layers))}; choose another --output to train a new one.")
        return
    shown = "; ".join(f"layer {layer}: fvu={r.metrics.get('fvu', float('nan')):.4g}, l0={r.metrics.get('l0', float('nan')):.4g}"
                      for layer, r in result.layers.items())
    click.echo(f"Trained a transcoder set of {len(result.layers)} layers ({result.d_sae} features): {shown}. "
               f"Saved to {output} as {name}.")


def _train_or_done(train: Any, runner: Any, **kwargs: Any) -> Any:
    """``train(**kwargs)``; ``None`` on torchrun ranks other than 0, which save nothing."""
    if runner is None:
        return train(**kwargs)
    from featurelens.core.training.data_parallel import WorkerDone

    try:
        return train(runner=runner, **kwargs)
    except WorkerDone:
        return None


@click.group("dictionaries")
def dictionaries_group() -> None:
    """List, evaluate, import and export dictionaries (SAEs, transcoders)."""


@dictionaries_group.command("list")
@store_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_command(store_path: Path | None, as_json: bool) -> None:
    """Show the dictionaries in the store with their evaluation metrics."""
    import polars as pl

    from featurelens.core.store.database import Store

    with Store.open(store_path, read_only=True) as store:
        frame = store.sql(
            "SELECT dictionary_id, model_id, hookpoint, architecture, d_in, d_sae, format, "
            "json_extract(metrics, '$.l0')::DOUBLE AS l0, json_extract(metrics, '$.fvu')::DOUBLE AS fvu, "
            "json_extract(metrics, '$.ce_loss_recovered')::DOUBLE AS ce_recovered, "
            "json_extract(metrics, '$.dead_fraction')::DOUBLE AS dead, "
            "json_extract_string(metrics, '$.splice') AS splice, json_extract_string(metrics, '$.split') AS split "
            "FROM dictionaries ORDER BY created_at")
    if as_json:
        click.echo(json.dumps(frame.to_dicts(), default=str, indent=2))
    elif frame.height == 0:
        click.echo("No dictionaries in the store yet (featurelens extract or dictionaries import adds them).")
    else:
        with pl.Config(tbl_rows=200, tbl_cols=20, fmt_str_lengths=60):
            click.echo(str(frame))


def _load(path: str, model: str, hookpoint: str | None, dtype: str, device: str) -> tuple[Any, Any, str]:
    from featurelens.core.dictionaries.loading import load_dictionary

    backend = _backend(model, dtype, device)
    probe = _load_any(path, hookpoint=hookpoint)
    hookpoint = hookpoint or probe.hookpoint
    if not hookpoint:
        raise FeaturelensError(f"{path} does not say which hookpoint it reads; pass --hookpoint.")
    dictionary = load_dictionary(path, backend=backend, hookpoint=hookpoint)
    return dictionary.to(backend.device), backend, hookpoint


def _source_of(spec: str) -> str:
    """What the store records as a dictionary's source: the name for hf:/saelens: specs."""
    from featurelens.core.dictionaries.pretrained import is_named

    return spec if is_named(spec) else str(Path(spec).resolve())


def _load_any(path: str, **options: Any) -> Any:
    """Load ``path`` with whichever registered format recognises it."""
    from featurelens.core.dictionaries.loading import refuse_pickle, with_hookpoint
    from featurelens.core.dictionaries.pretrained import resolve
    from featurelens.core.host.manager import get_registry

    registry = get_registry()
    hookpoint = options.pop("hookpoint", None)
    path, _ = resolve(path)
    if not Path(path).exists():
        raise FeaturelensError(f"{path} does not exist; pass the folder of a saved dictionary.")
    names = registry.names("dictionary_format")
    for name in names:
        fmt = registry.get("dictionary_format", name).create()
        if fmt.detect(path):
            return fmt.load(path, **with_hookpoint(fmt, options, hookpoint))
    refuse_pickle(Path(path))
    raise FeaturelensError(
        f"No dictionary format recognises {path} (known: {', '.join(names)}); "
        "pass a SAELens, sparsify, dictionary_learning, Gemma Scope or featurelens folder."
    )


@dictionaries_group.command("import")
@click.argument("path", metavar="PATH_OR_NAME")
@click.option("--model", default="smollm2", show_default=True, help="The model the dictionary reads.")
@click.option("--hookpoint", default=None, help="Where it reads the model [default: from its config].")
@click.option("--name", default=None,
              help="Dictionary id in the store [default: its training name, or generated, e.g. "
                   "smollm2-l6-topk-16384-1a2b3c4d].")
@store_option
@click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]), default="float32")
@click.option("--device", default="auto", show_default=True)
def import_command(path: str, model: str, hookpoint: str | None, name: str | None, store_path: Path | None,
                   dtype: str, device: str) -> None:
    """Record the dictionary at PATH (any supported format) in the store.

    `featurelens extract --dictionary NAME` then finds it by its name."""
    from featurelens.core.dictionaries.evaluation import register_dictionary
    from featurelens.core.dictionaries.naming import check_name, readable_name
    from featurelens.core.extraction.extractor import dictionary_id_of
    from featurelens.core.store.database import Store

    dictionary, backend, hookpoint = _load(path, model, hookpoint, dtype, device)
    if name is None:
        name = getattr(dictionary, "dictionary_id", None) or readable_name(
            model, hookpoint, dictionary.architecture, f"-{dictionary.d_sae}",
            dictionary_id_of(dictionary, backend.model_id, hookpoint).rsplit("-", 1)[-1])
    dictionary.dictionary_id = check_name(name)
    with Store.open(store_path) as store:
        dictionary_id = register_dictionary(store, dictionary, model_id=backend.model_id,
                                            hookpoint=hookpoint, source=_source_of(path))
    click.echo(f"Imported {dictionary.architecture} dictionary ({dictionary.d_sae} features, format "
               f"{getattr(dictionary, 'format', '?')}) as {dictionary_id}.")


@dictionaries_group.command("eval")
@click.argument("path")
@click.option("--model", default="smollm2", show_default=True, help="The model the dictionary reads.")
@click.option("--hookpoint", default=None, help="Where it reads the model [default: from its config].")
@click.option("--hookpoint-out", default=None, help="Transcoders: the hookpoint they predict.")
@click.option("--corpus", default="stdlib", show_default=True)
@click.option("--tokens", type=int, default=4096, show_default=True, help="Evaluation tokens.")
@click.option("--context", type=int, default=64, show_default=True)
@store_option
@click.option("--no-store", is_flag=True, help="Print the metrics without writing them to the store.")
@click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]), default="float32")
@click.option("--device", default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@click.option("--splice", type=click.Choice(["non-special", "all"]), default="non-special", show_default=True,
              help="Positions replaced for CE loss recovered and KL: all but BOS/EOS/padding, or every one "
                   "(as SAELens does).")
@click.option("--split", type=click.Choice(["heldout", "train", "all"]), default="heldout", show_default=True,
              help="Corpus documents to measure on: held out from training, the training ones, or all.")
def eval_command(path: str, model: str, hookpoint: str | None, hookpoint_out: str | None, corpus: str,
                 tokens: int, context: int, store_path: Path | None, no_store: bool, dtype: str,
                 device: str, as_json: bool, splice: str, split: str) -> None:
    """Measure the dictionary at PATH (L0, FVU, CE loss recovered, KL, dead/dense) and store it."""
    import torch

    from featurelens.core.dictionaries.evaluation import (
        evaluate,
        register_dictionary,
        store_metrics,
    )
    from featurelens.core.store.database import Store

    dictionary, backend, hookpoint = _load(path, model, hookpoint, dtype, device)
    with torch.no_grad():
        metrics = evaluate(dictionary, backend, hookpoint=hookpoint, corpus=corpus, tokens=tokens,
                           context=context, hookpoint_out=hookpoint_out, splice=splice,
                           split=split)
    if not no_store:
        with Store.open(store_path) as store:
            dictionary_id = register_dictionary(store, dictionary, model_id=backend.model_id,
                                                hookpoint=hookpoint, source=_source_of(path))
            store_metrics(store, dictionary_id, metrics)
    if as_json:
        click.echo(json.dumps(metrics, indent=2))
        return
    for key, value in metrics.items():
        click.echo(f"{key:>22}  {value:.6g}" if isinstance(value, float) else f"{key:>22}  {value}")


@dictionaries_group.command("export")
@click.argument("path")
@click.option("--to", "fmt", required=True, help="Target format: saelens, sparsify or featurelens.")
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False, path_type=Path))
def export_command(path: str, fmt: str, output: Path) -> None:
    """Convert the dictionary at PATH to another format (it encodes identically after)."""
    from featurelens.core.host.manager import get_registry

    dictionary = _load_any(path)
    target = get_registry().get("dictionary_format", fmt).create()
    target.save(dictionary, str(output))
    click.echo(f"Wrote {dictionary.architecture} dictionary as {fmt} to {output}.")


@dictionaries_group.command("make-set")
@click.argument("output", type=click.Path(file_okay=False, path_type=Path))
@click.option("--layer", "layers", multiple=True, required=True, metavar="L=SPEC",
              help="Layer L's transcoder: a folder (any format, or Gemma Scope 2's params.safetensors), a "
                   "circuit-tracer layer file, hf:<repo>[/<folder>] or saelens:<release>/<sae_id> (repeatable).")
@click.option("--input-hook", default="ln2.hook_normalized", show_default=True,
              help="Where every layer's transcoder reads, inside its block.")
@click.option("--output-hook", default="hook_mlp_out", show_default=True,
              help="What every layer's transcoder predicts, inside its block.")
@click.option("--name", default=None, help="Dictionary id of the set in the store [default: generated on import].")
def make_set_command(output: Path, layers: tuple[str, ...], input_hook: str, output_hook: str,
                     name: str | None) -> None:
    """Gather per-layer transcoders (e.g. SAELens or Gemma Scope ones) into one transcoder set.

    The set folder names each layer's transcoder; extract, import or graph it as one dictionary."""
    from featurelens.core.dictionaries.naming import check_name
    from featurelens.core.dictionaries.pretrained import is_named
    from featurelens.core.transcoder_layout import MANIFEST, write_manifest
    from featurelens.core.transcoder_set import TranscoderSet

    chosen: dict[int, str] = {}
    for pair in layers:
        key, sep, spec = pair.partition("=")
        if not sep or not key.strip().isdigit() or not spec.strip():
            raise FeaturelensError(f"--layer {pair!r} is not L=SPEC; write e.g. --layer 3=saelens:<release>/<sae_id>.")
        layer = int(key)
        if layer in chosen:
            raise FeaturelensError(f"Layer {layer} is given twice; give each layer one transcoder.")
        spec = spec.strip()
        chosen[layer] = spec if is_named(spec) else str(Path(spec).expanduser().resolve())
    if name:
        check_name(name)
    from featurelens.plugins.formats.transcoder_sets import load_any

    loaded = {}
    for layer, spec in chosen.items():
        dictionary = load_any(spec, base=Path.cwd())
        if not getattr(dictionary, "is_transcoder", False):
            raise FeaturelensError(f"{spec} (layer {layer}) is a {dictionary.architecture} dictionary that "
                                   "reads and writes one hookpoint, not a transcoder; a set holds transcoders.")
        loaded[layer] = dictionary
    tset = TranscoderSet(loaded, input_hook=input_hook, output_hook=output_hook)  # widths checked here
    if output.exists() and any(output.iterdir()) and not (output / MANIFEST).is_file():
        raise FeaturelensError(f"{output} already holds other files; choose a new folder for the set.")
    output.mkdir(parents=True, exist_ok=True)
    write_manifest(output, chosen, input_hook=input_hook, output_hook=output_hook, dictionary_id=name)
    click.echo(f"Wrote a transcoder set of layers {', '.join(map(str, tset.layers))} ({tset.d_sae} features) "
               f"to {output}.")
