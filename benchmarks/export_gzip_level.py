"""The gzip level of Neuronpedia batch files: CPU time and size per level, on real batches.

Run: PYTHONPATH=. .venv/bin/python benchmarks/export_gzip_level.py --store PATH [--batches 3]

Builds the activation lines of the last ``--batches`` batches of 1,000 features of the
store's first dictionary (as the export does, :mod:`featurelens.export.neuronpedia.activation_lines`)
and compresses them at levels 1, 3, 6 and 9, best of three, printing CPU seconds per 1,000
features, the compressed size and the ratio of each level's time and size to level 6's
(zlib's default). The level the export uses is :data:`featurelens.export.neuronpedia.layout.GZIP_LEVEL`.
"""

from __future__ import annotations

import argparse
import gzip
import time
from pathlib import Path

from featurelens.browser.queries import BrowserData
from featurelens.export.neuronpedia import activation_lines, rows
from featurelens.export.neuronpedia.layout import ALL_QUANTILE, GZIP_LEVEL

LEVELS = (1, 3, 6, 9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--batches", type=int, default=3)
    args = parser.parse_args()
    data = BrowserData(args.store)
    try:
        dictionary = data._dicts("SELECT * FROM dictionaries ORDER BY dictionary_id LIMIT 1", [])[0]
        did = dictionary["dictionary_id"]
        src = rows.Source.of(dictionary)
        top = data._dicts("SELECT max(feature) AS m FROM features WHERE dictionary_id = ?", [did])[0]["m"]
        blobs = []
        for b in range(args.batches):
            features = list(range(top + 1 - (b + 1) * 1000, top + 1 - b * 1000))
            table = activation_lines.read(data, src, did, features, ALL_QUANTILE)
            blobs.append("".join(activation_lines.lines(table, src, data.feature_stats(did, features))).encode())
    finally:
        data.close()
    raw = sum(len(b) for b in blobs)
    print(f"{args.batches} batches of 1,000 features, {raw / 2**20:,.1f} MiB of activation lines; "
          f"the export uses level {GZIP_LEVEL}")
    results = {}
    for level in LEVELS:
        best = min(_cpu(lambda: [gzip.compress(b, compresslevel=level, mtime=0) for b in blobs])
                   for _ in range(3))
        size = sum(len(gzip.compress(b, compresslevel=level, mtime=0)) for b in blobs)
        results[level] = (best / args.batches, size / args.batches)
    base_time, base_size = results[6]
    print(f"{'level':>5} {'CPU s / 1,000 features':>24} {'KiB / 1,000 features':>22} {'time / level 6':>15} "
          f"{'size / level 6':>15}")
    for level, (seconds, size) in results.items():
        print(f"{level:>5} {seconds:>24.3f} {size / 1024:>22,.0f} {seconds / base_time:>15.2f} "
              f"{size / base_size:>15.2f}")


def _cpu(call) -> float:
    start = time.process_time()
    call()
    return time.process_time() - start


if __name__ == "__main__":
    main()
