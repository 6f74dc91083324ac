"""Logit effects eager vs lazy: the extraction's final phase, and the fill rate afterwards.

Run: .venv/bin/python benchmarks/logit_effects.py --dictionary DICT_FOLDER [--tokens 2048]
         [--fill 4096] [--wide WIDE_DICT_FOLDER]

``DICT_FOLDER`` is a SAELens-format dictionary for the embedded SmolLM2 at
``blocks.3.hook_resid_post`` (benchmarks/extraction_width.py writes random TopK ones). The
same extraction runs twice into fresh stores, once with ``--logit-effects all`` and once
with ``lazy``; printed: each run's final phase (``ExtractResult.finish_seconds``: logit
effects plus the writes of features and examples) and their ratio, measured in this one
run. Then ``featurelens logits`` work is timed on the lazy store: ``--fill`` features
spread over the whole dictionary (every ``width / fill``-th), through
:func:`featurelens.core.lazy_logits.fill` (decoder rows sliced from the weights file),
with the model load counted apart; the filled rows are compared with the eager store's.

``--wide`` fills ``--fill`` features of a much wider dictionary (for example 1,048,576
features, 4.8 GB of weights) without extracting it: a store holding only its
``features`` rows (NULL effects) and a lazy run's marker is written, and the fill reads the
rows it needs through the safetensors memory map, never the whole file. Peak RSS
(``VmHWM``) is printed after each step.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

HOOK = "blocks.3.hook_resid_post"


def peak_gb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e9
    return float("nan")


def width_of(folder: Path) -> int:
    return int(json.loads((folder / "cfg.json").read_text())["d_sae"])


def extract_twice(dictionary: Path, tokens: int, folder: Path) -> dict[str, float]:
    from featurelens.core.extraction import ExtractSpec, extract
    from featurelens.core.host.manager import create

    lm = create("model_backend", "hf", "smollm2", dtype="float32", device="cpu")
    out = {}
    for mode in ("lazy", "all"):  # lazy first: the dictionary's pages are cold for both
        spec = ExtractSpec(hookpoint=HOOK, model="smollm2", dictionary=str(dictionary), corpus="stdlib",
                           tokens=tokens, batch_size=16, context=64, logit_effects=mode, device="cpu")
        result = extract(spec, store=folder / f"{mode}.duckdb", progress=False, model_obj=lm)
        out[mode] = result.finish_seconds
        print(f"extract --logit-effects {mode:4}: stream {result.stream_seconds:7.1f} s, final phase "
              f"{result.finish_seconds:7.1f} s (peak RSS so far {peak_gb():.2f} GB)", flush=True)
    print(f"final phase, all / lazy: {out['all'] / out['lazy']:.1f}x "
          f"({out['all']:.1f} s vs {out['lazy']:.1f} s)", flush=True)
    return out


def spread(width: int, n: int) -> str:
    step = max(1, width // n)
    return f"feature % {step} = 0"


def timed_fill(store_path: Path, where: str, label: str) -> None:
    import featurelens
    from featurelens.core.lazy_logits import Source, _load_model, fill, lazy_source
    from featurelens.core.selection import Selection

    with featurelens.open_store(store_path) as store:
        did = store.execute("SELECT dictionary_id FROM dictionaries LIMIT 1")[0][0]
        source: Source | None = lazy_source(store, did)
        assert source is not None
        start = time.perf_counter()
        _load_model(source, "cpu")  # the model load alone, as every fill pays it once
        load = time.perf_counter() - start
        result = fill(store, Selection(where=where), progress=False)
    work = result.seconds - load
    print(f"fill {label}: {result.filled} features in {result.seconds:.1f} s, of which model load ~{load:.1f} s; "
          f"{work / max(result.filled, 1) * 1e3:.2f} ms per feature after the load "
          f"({result.filled / max(work, 1e-9):.0f} features/s); peak RSS {peak_gb():.2f} GB", flush=True)


def compare(lazy: Path, eager: Path, where: str) -> None:
    import featurelens

    query = (f"SELECT feature, top_logits, top_logit_values, bottom_logits, bottom_logit_values FROM features "
             f"WHERE {where} ORDER BY feature")
    with featurelens.open_store(lazy, read_only=True) as store:
        got = store.execute(query)
    with featurelens.open_store(eager, read_only=True) as store:
        want = store.execute(query)
    same_tokens = all(a[1] == b[1] and a[3] == b[3] for a, b in zip(got, want, strict=True))
    exact = all(a[2] == b[2] and a[4] == b[4] for a, b in zip(got, want, strict=True))
    worst = max((abs(x - y) / max(abs(y), 1e-12) for a, b in zip(got, want, strict=True)
                 for x, y in zip(a[2] + a[4], b[2] + b[4], strict=True)), default=0.0)
    print(f"filled rows vs eager rows: {len(got)} features, same tokens: {same_tokens}, "
          f"bit-identical values: {exact}, largest relative difference {worst:.1e}", flush=True)


def wide_store(dictionary: Path, path: Path) -> None:
    """A store with ``dictionary``'s feature rows only (NULL effects) and a lazy run's marker."""
    import featurelens
    from featurelens.core.lazy_logits import PENDING, pending_marker

    width = width_of(dictionary)
    did = f"wide-{width}"
    marker = pending_marker("smollm2", "hf", "float32", str(dictionary), HOOK, True)
    config = {"dictionary_id": did, "model_id": "smollm2-135m-instruct", "hookpoint": HOOK,
              "fold_final_norm": True, "dtype": "float32", "logit_effects": "lazy", PENDING: marker}
    with featurelens.open_store(path) as store:
        store.execute("INSERT INTO models (model_id, backend, source, n_layers, d_model) "
                      "VALUES ('smollm2-135m-instruct', 'hf', 'embedded:smollm2', 30, 576)")
        store.execute("INSERT INTO dictionaries (dictionary_id, model_id, hookpoint, architecture, d_in, d_sae, "
                      "format, source, config) VALUES (?, 'smollm2-135m-instruct', ?, 'topk', 576, ?, 'saelens', ?, "
                      "'{}')", [did, HOOK, width, str(dictionary)])
        store.execute("INSERT INTO features (dictionary_id, feature, corpus_id, n_tokens, fire_count, density) "
                      "SELECT ?, range::INTEGER, 'none', 0, 0, 0.0 FROM range(?)", [did, width])
        store.execute("INSERT INTO runs (run_id, kind, config, status, featurelens_version, finished_at) "
                      "VALUES ('wide', 'extract', ?, 'done', ?, now())", [json.dumps(config), featurelens.__version__])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dictionary", type=Path, required=True)
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--fill", type=int, default=4096)
    parser.add_argument("--wide", type=Path, default=None)
    args = parser.parse_args()
    import torch

    print(f"torch threads {torch.get_num_threads()}; dictionary {args.dictionary} "
          f"({width_of(args.dictionary)} features), {args.tokens} tokens", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        extract_twice(args.dictionary, args.tokens, folder)
        where = spread(width_of(args.dictionary), args.fill)
        timed_fill(folder / "lazy.duckdb", where, f"{args.fill} of {width_of(args.dictionary)}")
        compare(folder / "lazy.duckdb", folder / "all.duckdb", where)
        if args.wide is not None:
            wide_store(args.wide, folder / "wide.duckdb")
            timed_fill(folder / "wide.duckdb", spread(width_of(args.wide), args.fill),
                       f"{args.fill} of {width_of(args.wide)} (rows sliced from the file)")


if __name__ == "__main__":
    main()
