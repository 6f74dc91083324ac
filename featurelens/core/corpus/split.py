"""Train and held-out documents of a corpus, and the seeded shuffle before packing.

A dictionary evaluated (or its features extracted) on the windows it was trained on
looks better than it is, so every corpus is split by *document*: a document is
held out when ``sha256(seed, its text)`` falls below ``held_out`` (10 % by default).
The test depends only on the document's content, never on its order, its path or
where the corpus lives, so the split is the same on every machine and for every run,
a corpus that grows keeps its old documents on their side, and two copies of one
document can never land on both sides. Training reads ``train``; extraction and
evaluation default to ``heldout``; ``all`` is the corpus as given, in its own order.

The two splits are also shuffled before packing (a seeded buffer of
``SHUFFLE_BUFFER`` documents, so corpora larger than memory still stream): read in
path order, the standard library's first windows all come from ``__future__``,
``_aix_support`` and the like, and so would every feature's top examples.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Any, Iterator

from featurelens.core.errors import FeaturelensError

SPLITS = ("train", "heldout", "all")
#: Documents shuffled at once; larger corpora are shuffled within windows of this size.
SHUFFLE_BUFFER = 10_000
HELD_OUT = 0.1
SEED = 0


def held_out(text: str, seed: int = SEED, fraction: float = HELD_OUT) -> bool:
    """Whether the document with this text is held out (deterministic, independent of order)."""
    digest = hashlib.sha256(f"{seed}\x1f{text}".encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / 2 ** 64 < fraction


@dataclass
class SplitCorpus:
    """One side of a corpus's split, shuffled; a corpus source itself (same protocol)."""

    source: Any
    split: str
    seed: int = SEED
    fraction: float = HELD_OUT
    buffer: int = SHUFFLE_BUFFER

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise FeaturelensError(f"--split {self.split!r} is not a split; choose {', '.join(SPLITS)}.")
        if not 0 < self.fraction < 1:
            raise FeaturelensError(f"The held-out fraction must be between 0 and 1, got {self.fraction}.")

    def describe(self) -> dict[str, Any]:
        """What is recorded with a run: enough to rebuild the same documents."""
        if self.split == "all":
            return {"split": "all", "shuffled": False}
        return {"split": self.split, "held_out_fraction": self.fraction, "seed": self.seed,
                "rule": "held out when sha256(f'{seed}\\x1f{document text}')[:8] / 2**64 < fraction",
                "shuffled": True, "shuffle_buffer": self.buffer}

    def fingerprint(self) -> str:
        inner = self.source.fingerprint()
        if self.split == "all":
            return inner
        return f"{inner}-{self.split}-{hashlib.sha256(repr(sorted(self.describe().items())).encode()).hexdigest()[:8]}"

    def __getattr__(self, name: str) -> Any:  # skipped counts and the like of the source
        if name == "source":
            raise AttributeError(name)
        return getattr(self.source, name)

    def __iter__(self) -> Iterator[Any]:
        if self.split == "all":
            yield from self.source
            return
        want_held_out = self.split == "heldout"
        rng = random.Random(f"featurelens-shuffle-{self.seed}-{self.split}")
        pool: list[Any] = []
        kept = 0
        for document in self.source:
            if held_out(document.text, self.seed, self.fraction) != want_held_out:
                continue
            kept += 1
            pool.append(document)
            if len(pool) >= self.buffer:
                rng.shuffle(pool)
                yield from pool
                pool = []
        rng.shuffle(pool)
        yield from pool
        if kept == 0:
            raise FeaturelensError(
                f"The corpus has no {self.split} documents (a document-level split holds out "
                f"{self.fraction:.0%} of documents, and this corpus has too few); give it more "
                "documents or pass --split all.")


def split_corpus(source: Any, split: str, *, seed: int = SEED, fraction: float = HELD_OUT) -> SplitCorpus:
    """``source`` restricted to ``split`` (``train``, ``heldout`` or ``all``)."""
    return SplitCorpus(source, split, seed, fraction)
