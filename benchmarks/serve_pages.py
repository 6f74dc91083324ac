"""Feature-browser latency on a store with 1M features, against the same pages on a
store with 1k features, measured in the same run.

The ratio (1M ÷ 1k, median latency per page kind) shows whether pages are
paginated and looked up by key (ratio near 1) or scan the store (ratio near 1000).
Both stores are filled by the synthetic-store test helper through Store.insert; the
pages are fetched over HTTP from a live ``featurelens serve`` server on 127.0.0.1.

    .venv/bin/python benchmarks/serve_pages.py [--features 1000000] [--repeat 15]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from synthetic_store import fill_store  # noqa: E402

import featurelens  # noqa: E402
from featurelens.browser.server import make_server, url_of  # noqa: E402
from featurelens.testing.servers import start_in_thread  # noqa: E402

DID = "smollm2-l6-topk"


def build(path: Path, n: int) -> float:
    started = time.perf_counter()
    with featurelens.open_store(path) as store:
        fill_store(store, n_features=n, n_sequences=4096, seq_len=32, n_top=4, n_quantile=2, n_random=0)
    return time.perf_counter() - started


def pages(n: int, rng: random.Random) -> dict[str, list[str]]:
    """The URLs of each page kind; features picked at random across the whole range."""
    deep = (n // 50) - 1
    return {
        "home": ["/"],
        "feature list, page 1": [f"/dictionary/{DID}"],
        "feature list, last page": [f"/dictionary/{DID}?page={deep}"],
        "feature page": [f"/feature/{DID}/{rng.randrange(n)}" for _ in range(50)],
        "search 'dogs'": ["/search?q=dogs"],
        "sql count(*)": ["/sql?q=" + urllib.parse.quote("SELECT count(*) FROM features WHERE density < 0.01")],
    }


def measure(path: Path, n: int, repeat: int) -> dict[str, float]:
    """Median latency per page kind, after the background search index is built."""
    started = time.perf_counter()
    server = make_server(path, "127.0.0.1", 0)
    start_in_thread(server)
    server.browser_data.search_index.wait(120)
    out = {"startup + search index (once)": time.perf_counter() - started}
    base = url_of(server).rstrip("/")
    try:
        for kind, urls in pages(n, random.Random(0)).items():
            times = []
            for i in range(repeat):
                url = urls[i % len(urls)]
                started = time.perf_counter()
                with urllib.request.urlopen(base + url, timeout=60) as response:
                    response.read()
                    assert response.status == 200, url
                times.append(time.perf_counter() - started)
            out[kind] = statistics.median(times[1:] if len(times) > 2 else times)
    finally:
        server.shutdown()
        server.server_close()
        server.browser_data.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        small, large = Path(tmp) / "small.duckdb", Path(tmp) / "large.duckdb"
        print(f"filling stores: {args.small} features in {build(small, args.small):.1f} s, "
              f"{args.features} features in {build(large, args.features):.1f} s "
              f"({large.stat().st_size / 2**20:.0f} MiB)")
        lat_small = measure(small, args.small, args.repeat)
        lat_large = measure(large, args.features, args.repeat)
    print(f"\n{'page (median ms)':<30}{args.small:>9,}{args.features:>15,}{'ratio':>8}")
    for kind in lat_small:
        a, b = lat_small[kind] * 1000, lat_large[kind] * 1000
        print(f"{kind:<30}{a:>9.1f}{b:>15.1f}{b / a:>8.2f}")


if __name__ == "__main__":
    main()
