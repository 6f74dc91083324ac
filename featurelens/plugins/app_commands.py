"""The application commands: ``serve`` (feature browser), ``export`` and ``run``.

Thin: they parse options, call :mod:`featurelens.browser`, :mod:`featurelens.export`
and :mod:`featurelens.jobs.run.job`, and print.
"""

from __future__ import annotations

from pathlib import Path

import click

import featurelens
from featurelens.core.cli.options import store_option

featurelens_api = 1


@featurelens.hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(serve_command)
    cli.add_command(export_command)
    cli.add_command(run_command)
    cli.add_command(search_command)


@click.command("serve")
@store_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; keep the loopback default unless you mean to share it.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535),
              help="Port (0 picks a free one).")
@click.option("--model", default=None,
              help="Load this model (smollm2, a folder) so feature pages can steer it.")
@click.option("--api", is_flag=True,
              help="With --model: also serve OpenAI-compatible /v1/completions and /v1/chat/completions "
                   "with a \"steering\" body field.")
def serve_command(store_path: Path | None, host: str, port: int, model: str | None, api: bool) -> None:
    """Browse the feature store in a local web page (read-only; works offline).

    Labeling jobs (explain, score, label) can write the store while it runs; pages show
    their progress."""
    from featurelens.browser.server import is_loopback, make_server, url_of

    if api and not model:
        raise click.UsageError("--api needs --model: the endpoint runs that model.")
    if model:
        from featurelens.browser.steering_server import make_steering_server

        server = make_steering_server(store_path, host, port, model=model, api=api)
    else:
        server = make_server(store_path, host, port)
    if not is_loopback(host):
        click.echo(f"Warning: listening on {host}: anyone who can reach this machine can read the store.",
                   err=True)
    click.echo(f"Serving {server.browser_data.path} at {url_of(server)}  (Ctrl-C to stop)", err=True)  # type: ignore[attr-defined]
    if api:
        click.echo(f"OpenAI-compatible steering API at {url_of(server)}v1 (model {model})", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("Stopped.", err=True)
    finally:
        server.server_close()
        server.browser_data.close()  # type: ignore[attr-defined]


@click.command("export")
@store_option
@click.option("--format", "fmt",
              type=click.Choice(["neuronpedia", "neuronpedia-upload", "parquet", "html", "neuronpedia-graph"]),
              required=True,
              help="neuronpedia: the bucket Neuronpedia's admin import reads; neuronpedia-upload: "
                   "payloads for neuronpedia.org's /api/feature/upload-batch; parquet: one file per table; "
                   "html: static report; neuronpedia-graph: one attribution graph (--graph) for Neuronpedia's "
                   "graph viewer, with its features' detail files.")
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder to write [default: export-<format>].")
@click.option("--dictionary", "dictionary_id", default=None, help="Only this dictionary's features.")
@click.option("--where", default=None,
              help="SQL condition on the features table, e.g. \"density < 0.01\".")
@click.option("--visibility", type=click.Choice(["PUBLIC", "UNLISTED", "PRIVATE"]), default="PUBLIC",
              show_default=True, help="Neuronpedia visibility of the model, release, source set and source rows.")
@click.option("--embeddings", default=None, metavar="SCHEME",
              help="neuronpedia: add each explanation's embedding (openai: text-embedding-3-large, 256), which "
                   "Neuronpedia's explanation search reads (key from OPENAI_API_KEY).")
@click.option("--send", "send_url", default=None, metavar="URL",
              help="neuronpedia-upload: POST the payloads to URL (e.g. https://www.neuronpedia.org), "
                   "key from NEURONPEDIA_API_KEY.")
@click.option("--dry-run", is_flag=True, help="With --send: print what would be sent, send nothing.")
@click.option("--graph", "graph_id", default=None, help="neuronpedia-graph: the graph to export (graphs.graph_id).")
@click.option("--feature-base-url", default=None,
              help="neuronpedia-graph: where the viewer will fetch features/<n>.json [default: features].")
@click.option("--all-nodes", is_flag=True, help="neuronpedia-graph: also the nodes and edges pruning removed.")
@click.option("--processes", default=None, type=click.IntRange(1),
              help="neuronpedia, html: worker processes writing batches [default: one per core from 20,000 "
                   "features, where their start of about a second each pays; this process below].")
def export_command(store_path: Path | None, fmt: str, output: Path | None, dictionary_id: str | None,
                   where: str | None, visibility: str, embeddings: str | None, send_url: str | None,
                   dry_run: bool, graph_id: str | None, feature_base_url: str | None, all_nodes: bool,
                   processes: int | None) -> None:
    """Export features as Neuronpedia JSON, upload payloads, Parquet tables or a static HTML report,
    or an attribution graph for Neuronpedia's graph viewer."""
    from featurelens.core.errors import FeaturelensError
    from featurelens.export.runner import export

    if (send_url or dry_run) and fmt != "neuronpedia-upload":
        raise FeaturelensError("--send and --dry-run go with --format neuronpedia-upload; drop them or change --format.")
    if dry_run and not send_url:
        raise FeaturelensError("--dry-run shows what --send would do; add --send URL.")
    target = output or Path(f"export-{fmt}")
    summary = export(store_path, fmt, target, dictionary_id=dictionary_id, where=where,
                     visibility=visibility, embeddings=embeddings, graph_id=graph_id,
                     feature_base_url=feature_base_url, all_nodes=all_nodes, processes=processes)
    click.echo(summary)
    if send_url:
        from featurelens.export.neuronpedia import upload

        if dry_run:
            click.echo(upload.describe(target, send_url))
        else:
            sent, skipped = upload.send(target, send_url)
            click.echo(f"Sent {sent} payload(s) to {send_url.rstrip('/')}{upload.ROUTE}"
                       f"{f' ({skipped} sent before, skipped)' if skipped else ''}.")


@click.command("search")
@click.argument("text")
@store_option
@click.option("--limit", default=10, show_default=True, type=click.IntRange(1), help="How many explanations to list.")
@click.option("--dictionary", "dictionary_id", default=None, help="Only this dictionary's features.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON lines.")
def search_command(text: str, store_path: Path | None, limit: int, dictionary_id: str | None, as_json: bool) -> None:
    """Find features by what their explanations mean (cosine similarity of sentence embeddings).

    Explanations not embedded yet are embedded first (all-MiniLM-L6-v2, stored in
    explanation_embeddings), so the first search of a large store takes longer."""
    import json

    from featurelens.core.errors import FeaturelensError
    from featurelens.core.store import explanation_search
    from featurelens.core.store.database import Store, default_store_path

    path = store_path or default_store_path()
    if not path.exists():
        raise FeaturelensError(f"There is no feature store at {path}; run featurelens run first, or point "
                               "--store / $FEATURELENS_STORE at an existing store.")
    with Store.open(path) as store:
        added = explanation_search.embed_missing(store)
        rows = explanation_search.search(store.execute, text, limit=limit, dictionary_id=dictionary_id)
    if added:
        click.echo(f"Embedded {added} explanation(s) for search.", err=True)
    if not rows:
        click.echo("No explanations to search; run featurelens explain (or run) first.")
        return
    for row in rows:
        if as_json:
            click.echo(json.dumps({**row, "similarity": round(float(row["similarity"]), 4)}))
        else:
            click.echo(f"{row['similarity']:.3f}  {row['dictionary_id']} #{row['feature']}  {row['text']}")


@click.command("run")
@store_option
@click.option("--model", default="smollm2", show_default=True, help="Model: the embedded smollm2 or a folder.")
@click.option("--corpus", default="stdlib", show_default=True, help="Corpus (stdlib, a path, or source:location).")
@click.option("--layer", default=6, show_default=True, type=click.IntRange(0), help="Residual stream layer to read.")
@click.option("--expansion", default=4, show_default=True, type=click.IntRange(1),
              help="Dictionary width as a multiple of the model width.")
@click.option("--k", default=16, show_default=True, type=click.IntRange(1), help="Active features per token (TopK).")
@click.option("--train-tokens", default=32_768, show_default=True, type=click.IntRange(1000),
              help="Tokens to train the dictionary on.")
@click.option("--extract-tokens", default=16_384, show_default=True, type=click.IntRange(100),
              help="Tokens to measure feature statistics and examples on.")
@click.option("--label-features", default=6, show_default=True, type=click.IntRange(0),
              help="How many features the LLM explains and simulation-scores (every feature that "
                   "fired gets a token-lookup label and offline scores regardless).")
@click.option("--llm", default="local:smollm2", show_default=True,
              help="LLM that explains and simulates (provider:model).")
@click.option("--score-windows", default=10, show_default=True, type=click.IntRange(1),
              help="Activating (and as many random) windows simulated per feature.")
@click.option("--embedding-features", default=24, show_default=True, type=click.IntRange(0),
              help="Features whose labels the embedding scorer (MiniLM, ~1 s each) also scores.")
@click.option("--split", type=click.Choice(["heldout", "all"]), default="heldout", show_default=True,
              help="heldout: train on the training documents, extract on the held-out ones; "
                   "all: both on the whole corpus (for a corpus of a few documents).")
@click.option("--embeddings", default="local", show_default=True, metavar="SCHEME",
              help="Embed every explanation for featurelens search by meaning: local (the installed "
                   "all-MiniLM-L6-v2, stored in explanation_embeddings) or none (search embeds on its first query).")
def run_command(store_path: Path | None, model: str, corpus: str, layer: int, expansion: int, k: int,
                train_tokens: int, extract_tokens: int, label_features: int, llm: str,
                score_windows: int, embedding_features: int, split: str, embeddings: str) -> None:
    """The whole job: train a dictionary, extract features, label every feature that fired
    without an LLM, score the labels offline, explain and score a sample with the LLM, and
    embed every explanation for featurelens search.

    Rerunning the same command resumes: every stage skips what the store already holds.
    """
    from featurelens.core.store.database import default_store_path
    from featurelens.jobs.run.job import (
        RunOptions,
        format_summary,
        run_pipeline,
        summarize,
    )

    path = store_path or default_store_path()
    options = RunOptions(model=model, corpus=corpus, layer=layer, expansion=expansion, k=k,
                         train_tokens=train_tokens, extract_tokens=extract_tokens,
                         label_features=label_features, llm=llm, score_windows=score_windows,
                         embedding_features=embedding_features, split=split, embeddings=embeddings)
    report = run_pipeline(path, options, echo=lambda line: click.echo(line, err=True))
    click.echo(format_summary(summarize(path, report.dictionary_id), options))
