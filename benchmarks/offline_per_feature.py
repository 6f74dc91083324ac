"""The per-feature Python work of the offline stages against its plain reading, in one run.

Run: PYTHONPATH=. .venv/bin/python benchmarks/offline_per_feature.py --store PATH [--slice 4096]
     [--repeat 3]

On a copy of the store, for the last ``--slice`` features of the dictionary (the ones far
from the start, where width would show), it times by this process's CPU time:

- reading records (``stream_records``) for token-lookup's and token-check's windows, with
  activation lists converted by numpy (:func:`featurelens.core.selection.float_lists`)
  against Arrow's per-element ``to_pylist``;
- token-lookup's ``explain`` against its plain reading (every token and pair counted,
  tests/labelers/test_token_lookup_plain.py);
- token-check's ``score`` against its plain reading (every position marked,
  tests/scorers/test_token_check_plain.py).

Both sides give the same records, labels and scores (checked here too); it prints
features a second of each and the plain / fast CPU ratio (best of ``--repeat``).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from itertools import repeat
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "labelers"))
sys.path.insert(0, str(ROOT / "tests" / "scorers"))

import featurelens  # noqa: E402
from featurelens.core import selection  # noqa: E402


def best_cpu(call, repeat: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        cpu = time.process_time()
        result = call()
        best = min(best, time.process_time() - cpu)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--slice", type=int, default=4096)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from test_token_check_plain import plain_score
    from test_token_lookup_plain import plain_label

    from featurelens.core.host.protocols import ParseError
    from featurelens.labelers.explainers.token_lookup import TokenLookupExplainer
    from featurelens.scorers.scoring_windows import scorer_kinds
    from featurelens.scorers.token_check import TokenCheckScorer

    fast_lists = selection.float_lists
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "store.duckdb"
        shutil.copy(args.store, path)
        with featurelens.open_store(path) as store:
            width = store.execute("SELECT max(feature) + 1 FROM features")[0][0]
            where = f"feature >= {width - args.slice} AND fire_count > 0"
            records = {}
            for name, kinds in (("lookup", {"top": 10}), ("check", scorer_kinds(50, 50))):
                def read(kinds=kinds):
                    return [r for c in selection.stream_records(store, selection.Selection(where=where),
                                                                256, kinds) for r in c]
                selection.float_lists = lambda column, spans=None: [  # Arrow's own conversion
                    v if v is None or spans is None else v[a:b]
                    for v, (a, b) in zip(column.to_pylist(), spans or repeat((0, 0)))]
                plain_cpu, plain = best_cpu(read, args.repeat)
                selection.float_lists = fast_lists
                fast_cpu, fast = best_cpu(read, args.repeat)
                assert plain == fast, "records differ"
                records[name] = fast
                rows.append((f"read records ({name})", len(fast), plain_cpu, fast_cpu))
        explainer, scorer = TokenLookupExplainer(), TokenCheckScorer()

        def explain(fn):
            out = {}
            for record in records["lookup"]:
                try:
                    label = fn(record)
                    out[record.feature] = (str(label), label.evidence)
                except ParseError:
                    pass
            return out
        plain_cpu, plain = best_cpu(lambda: explain(lambda r: plain_label(explainer, r)), args.repeat)
        fast_cpu, fast = best_cpu(lambda: explain(explainer.explain), args.repeat)
        assert plain == fast, "labels differ"
        rows.append(("token-lookup explain", len(records["lookup"]), plain_cpu, fast_cpu))
        labels = {feature: text for feature, (text, _) in fast.items()}

        def score(fn):
            return [fn(r, labels[r.feature]) for r in records["check"] if r.feature in labels]
        plain_cpu, plain = best_cpu(lambda: score(lambda r, text: plain_score(scorer, r, text)), args.repeat)
        fast_cpu, fast = best_cpu(lambda: score(lambda r, text: (
            (res := scorer.score(r, text, [])).score, res.metrics, res.details)), args.repeat)
        assert plain == fast, "scores differ"
        rows.append(("token-check score", len(labels), plain_cpu, fast_cpu))
    print(f"{width:,} features; the last {args.slice:,}; CPU time, best of {args.repeat}")
    print(f"{'step':<24} {'features':>9} {'plain feat/s':>13} {'fast feat/s':>12} {'plain/fast CPU':>15}")
    for name, n, plain_cpu, fast_cpu in rows:
        print(f"{name:<24} {n:>9,} {n / plain_cpu:>13,.0f} {n / fast_cpu:>12,.0f} {plain_cpu / fast_cpu:>15.2f}")


if __name__ == "__main__":
    main()
