"""``explain --dry-run`` on 100,000 features: time, and the sample's error against planning all.

Builds the labeling benchmark's store (100,000 features, 10 top windows of 32 tokens
each), then in one run:

1. times ``plan_explain`` for ``openai:gpt-4o-mini`` on all of it (sampled planning,
   tiktoken o200k_base counts) in a fresh process, and the base commit's dry run
   (4 characters a token, every feature planned) on ``--base-features`` of them,
   extrapolated per feature: the ratio is old / new seconds for 100,000 features;
2. compares the sampled input-token total with planning every one of ``--exact`` features.

tiktoken needs its o200k_base vocabulary; offline, point ``TIKTOKEN_CACHE_DIR`` at a
folder holding it (``../shared/data/o200k_base.tiktoken`` is copied there if found).

    .venv/bin/python benchmarks/dry_run.py [--features 100000] [--exact 5000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from durability import build, env, extract  # noqa: E402

CHILD = """
import json, sys, time
sys.path.insert(0, {tree!r})
import featurelens
from featurelens.labelers.explain import ExplainSpec, plan_explain
limit = {limit}
size = {size}
if size:
    import featurelens.llm.plan_sample as ps
    ps.sample_selection.__defaults__ = (size,)
with featurelens.open_store({path!r}) as store:
    start = time.perf_counter()
    plan = plan_explain(store, ExplainSpec("openai:gpt-4o-mini", limit=limit))
    print(json.dumps({{"seconds": time.perf_counter() - start, "features": plan.features,
                      "input_tokens": plan.input_tokens}}))
"""


def plan(tree: Path, path: Path, limit: int | None, size: int = 0) -> dict:
    code = CHILD.format(tree=str(tree), path=str(path), limit=limit, size=size)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**env(), "TIKTOKEN_CACHE_DIR": os.environ["TIKTOKEN_CACHE_DIR"]}, cwd=tree)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--features", type=int, default=100_000)
    parser.add_argument("--exact", type=int, default=5000)
    parser.add_argument("--base", default="fc8c283")
    parser.add_argument("--base-features", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if "TIKTOKEN_CACHE_DIR" not in os.environ:
            cache = Path(tmp) / "tiktoken"
            cache.mkdir()
            vocab = ROOT.parent / "shared" / "data" / "o200k_base.tiktoken"
            if not vocab.exists():
                vocab = Path("/work/shared/data/o200k_base.tiktoken")
            if vocab.exists():
                shutil.copy(vocab, cache / "fb374d419588a4632f3f557e76b4b70aebbca790")
            os.environ["TIKTOKEN_CACHE_DIR"] = str(cache)
        before = extract(args.base, Path(tmp) / "before")
        new_store, old_store = Path(tmp) / "new.duckdb", Path(tmp) / "old.duckdb"
        build(ROOT, new_store, args.features)
        build(before, old_store, args.features)
        new = plan(ROOT, new_store, None)
        old = plan(before, old_store, args.base_features)
        old_total = old["seconds"] / args.base_features * args.features
        print(f"dry run of {args.features:,} features: {new['seconds']:.1f} s now (sampled, o200k_base); "
              f"base {args.base} {old['seconds']:.1f} s for {args.base_features:,} features = "
              f"{old_total:.0f} s extrapolated; ratio old / new {old_total / new['seconds']:.1f}")
        print(f"input tokens per feature: {new['input_tokens'] / new['features']:,.0f} counted with "
              f"o200k_base vs {old['input_tokens'] / old['features']:,.0f} at 4 characters a token "
              f"(ratio {new['input_tokens'] / new['features'] / (old['input_tokens'] / old['features']):.2f})")
        sampled = plan(ROOT, new_store, args.exact)
        exact = plan(ROOT, new_store, args.exact, size=10**9)
        print(f"{args.exact:,} features: sampled {sampled['input_tokens']:,} input tokens in "
              f"{sampled['seconds']:.1f} s, every feature planned {exact['input_tokens']:,} in "
              f"{exact['seconds']:.1f} s; sampled / exact {sampled['input_tokens'] / exact['input_tokens']:.3f}")


if __name__ == "__main__":
    main()
