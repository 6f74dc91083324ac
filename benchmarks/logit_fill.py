"""The lazy logit-effects fill against its arithmetic limit, measured in one run.

Run: .venv/bin/python benchmarks/logit_fill.py --store LAZY_STORE [--features 40960] [--folder DIR]

``LAZY_STORE`` is a store extracted with ``--logit-effects lazy`` (for example
benchmarks/million.py's 1M extraction); it is copied into ``--folder`` (a temporary
folder by default) and only the copy is written. The first ``--features`` features still
pending are taken, and on those same rows this prints:

- the limit: their decoder rows (read beforehand, not timed) through the product and
  :func:`~featurelens.core.extraction.logit_effects.extremes` alone, in the fill's chunks
  and row steps, with the fill's model and unembedding;
- the fill: :func:`featurelens.core.lazy_logits.fill` over the same features (keys, row
  slicing, product, token decoding and one ``UPDATE`` per chunk), its model load
  (``FillResult.load_seconds``) left out;
- fill features/s over limit features/s, wall and CPU time (``time.process_time``, all
  threads) of each, the load average before and after, and whether the stored values equal
  the limit's bit for bit (float32 widened to the stored float64).

The limit is timed twice, before and after the fill, and the ratio is taken against the
mean of the two: on a machine shared with other work the load moves during a run, and a
single limit timed before the fill would credit or charge the fill with that change.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--features", type=int, default=40960)
    parser.add_argument("--folder", type=Path, default=None, help="where the store's copy goes (made if missing)")
    args = parser.parse_args()
    if args.folder is not None:
        args.folder.mkdir(parents=True, exist_ok=True)
    import torch

    import featurelens
    from featurelens.core.lazy_logits import FILL_CHUNK, DecoderRows, _effects, _load_model, fill, lazy_source
    from featurelens.core.selection import Selection

    with tempfile.TemporaryDirectory(dir=args.folder) as tmp:
        store_path = Path(tmp) / "fill.duckdb"
        shutil.copyfile(args.store, store_path)
        with featurelens.open_store(store_path) as store:
            dictionary_id = store.execute("SELECT dictionary_id FROM dictionaries LIMIT 1")[0][0]
            source = lazy_source(store, dictionary_id)
            if source is None:
                raise SystemExit(f"{args.store} has no lazy extraction of {dictionary_id}; extract with "
                                 "--logit-effects lazy.")
            ids = [int(f) for (f,) in store.execute(
                "SELECT feature FROM features WHERE dictionary_id = ? AND top_logits IS NULL ORDER BY feature "
                f"LIMIT {int(args.features)}", [dictionary_id])]
        last = ids[-1]
        lm = _load_model(source, "cpu")
        with torch.no_grad():
            w_u = lm.unembedding(fold_final_norm=source.fold_final_norm).to(lm.device)
        rows_of = DecoderRows(source, lm)
        chunks = [torch.tensor(ids[i:i + FILL_CHUNK]) for i in range(0, len(ids), FILL_CHUNK)]
        directions = [rows_of(c) for c in chunks]  # read (and paged in) before either timing
        print(f"torch threads {torch.get_num_threads()}; {len(ids)} pending features of {dictionary_id} "
              f"(up to feature {last}); load average {os.getloadavg()[0]:.2f}", flush=True)

        cpu, wall = time.process_time(), time.perf_counter()
        limit = [_effects(d, w_u, 10) for d in directions]
        limit_wall, limit_cpu = time.perf_counter() - wall, time.process_time() - cpu

        with featurelens.open_store(store_path) as store:
            cpu = time.process_time()
            result = fill(store, Selection(f"feature <= {last}", dictionary_id), progress=False)
            fill_cpu = time.process_time() - cpu
            stored = store.execute(
                "SELECT top_logit_values, bottom_logit_values FROM features WHERE dictionary_id = ? "
                f"AND feature <= {last} AND top_logits IS NOT NULL ORDER BY feature", [dictionary_id])
        fill_wall = result.seconds - result.load_seconds
        cpu, wall = time.process_time(), time.perf_counter()
        again = [_effects(d, w_u, 10) for d in directions]
        after_wall, after_cpu = time.perf_counter() - wall, time.process_time() - cpu
        del lm, rows_of, directions
        same_limit = all(torch.equal(x, y) for a, b in zip(limit, again, strict=True)
                         for x, y in zip(a, b, strict=True))
        top = torch.cat([e[1] for e in limit]).double().tolist()
        bottom = torch.cat([e[3] for e in limit]).double().tolist()
        same = len(stored) == len(ids) and all(
            list(s[0]) == t and list(s[1]) == b for s, t, b in zip(stored, top, bottom, strict=True))
        n = len(ids)
        for label, seconds, used in (("before", limit_wall, limit_cpu), ("after", after_wall, after_cpu)):
            print(f"limit {label:6} (product + extremes, same rows): {n / seconds:7.0f} features/s "
                  f"({seconds:.1f} s wall, {used:.1f} s CPU, {seconds / n * 1e3:.3f} ms a feature)")
        limit_wall = (limit_wall + after_wall) / 2
        print(f"fill (featurelens.core.lazy_logits.fill):      {result.filled / fill_wall:7.0f} features/s "
              f"({fill_wall:.1f} s wall after a {result.load_seconds:.1f} s model load, "
              f"{fill_cpu:.1f} s CPU with the load, {fill_wall / max(result.filled, 1) * 1e3:.3f} ms a feature)")
        print(f"fill / limit (mean of the two): {(result.filled / fill_wall) / (n / limit_wall):.3f}; stored values "
              f"equal the limit's: {same and same_limit}; load average {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
