"""Each distinct text embedded once: a content-addressed, bounded cache of sentence vectors.

At dictionary width the texts a sentence model is asked to embed repeat: a corpus
window fires many features, so the embedding scorer meets the same test window again
and again, and offline explainers write the same label for many features. The model
(:mod:`featurelens.core.model.sentence_embedding`) embeds only hundreds of texts a
second on a CPU, so the cost of a stage is the number of *distinct* texts it embeds.

:class:`TextVectors` keys vectors by the model and a digest of the text (16 bytes of
BLAKE2b, not the text itself, so a key costs the same whatever the text's length),
embeds the texts it has not seen in one model call (which batches them by token length,
so little padding is computed), and
keeps at most ``capacity`` vectors, least recently used dropped first: memory stays flat
however many features a run scores. A lookup returns the distinct texts' vectors as one
``[distinct, d]`` float32 matrix and an index from each text to its row, so callers
compute similarities in bulk with numpy instead of per text.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import TYPE_CHECKING, Sequence

from featurelens.core.errors import FeaturelensError

if TYPE_CHECKING:
    import numpy as np

#: Vectors kept between lookups (384 float32 numbers each: about 1.5 KB, so 65,536 are ~100 MB).
CAPACITY = 65_536

#: Texts per model call.
BATCH_SIZE = 128


def text_digest(text: str) -> bytes:
    """The content address of ``text``: 16 bytes of BLAKE2b over its UTF-8 bytes."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class TextVectors:
    """Sentence vectors of texts from the model at ``path``, each distinct text embedded once
    while its vector stays among the ``capacity`` most recently used."""

    def __init__(self, path: str, capacity: int = CAPACITY, batch_size: int = BATCH_SIZE):
        if capacity < 0 or batch_size < 1:
            raise FeaturelensError("The text-vector cache needs capacity >= 0 and batch_size >= 1; "
                                   "fix the cache options.")
        self.path, self.capacity, self.batch_size = path, int(capacity), int(batch_size)
        self._kept: OrderedDict[bytes, np.ndarray] = OrderedDict()
        #: Texts embedded by the model, and texts answered from the cache (over all lookups).
        self.embedded = 0
        self.reused = 0

    def __len__(self) -> int:
        return len(self._kept)

    def lookup(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(vectors, index)``: ``vectors[index[i]]`` is ``texts[i]``'s unit-length vector;
        ``vectors`` holds one float32 row per distinct text of this call (so its size is
        bounded by the call, not by the run)."""
        import numpy as np  # numpy only once vectors are made: the CLI's --help stays light

        from featurelens.core.model.sentence_embedding import embed

        rows: dict[str, int] = {}  # each distinct text's row; digests only for those
        index = np.fromiter((rows.setdefault(text, len(rows)) for text in texts), dtype=np.int64,
                            count=len(texts))
        first = list(rows)
        keys = [text_digest(text) for text in first]
        found: dict[int, np.ndarray] = {}
        for row, key in enumerate(keys):
            vector = self._kept.get(key)
            if vector is not None:
                self._kept.move_to_end(key)
                found[row] = vector
        missing = [row for row in range(len(keys)) if row not in found]
        fresh = None
        if missing:
            fresh = embed([first[r] for r in missing], self.path, batch_size=self.batch_size).float().numpy()
        width = fresh.shape[1] if fresh is not None else (next(iter(found.values())).shape[0] if found else 0)
        vectors = np.empty((len(keys), width), dtype=np.float32)
        for row, vector in found.items():
            vectors[row] = vector
        if fresh is not None:
            vectors[missing] = fresh
            for row in missing:
                self._keep(keys[row], vectors[row].copy())
        self.embedded += len(missing)
        self.reused += len(keys) - len(missing)
        return vectors, index

    def remember(self, texts: Sequence[str], vectors: np.ndarray) -> int:
        """Keep ``vectors[i]`` as ``texts[i]``'s vector without embedding it (vectors this
        model made earlier and stored, e.g. explanation search's); returns how many were new.
        A text already kept keeps its vector."""
        import numpy as np

        if vectors.ndim != 2 or vectors.shape[0] != len(texts):
            raise FeaturelensError(f"remember() needs one vector a text; got {vectors.shape[0]} "
                                   f"vectors for {len(texts)} texts.")
        added = 0
        for text, vector in zip(texts, vectors):
            key = text_digest(text)
            if key not in self._kept:
                self._keep(key, np.array(vector, dtype=np.float32))
                added += 1
        return added

    def _keep(self, key: bytes, vector: np.ndarray) -> None:
        if self.capacity == 0:
            return
        self._kept[key] = vector
        while len(self._kept) > self.capacity:
            self._kept.popitem(last=False)


def pair_cosines(vectors: np.ndarray, left: np.ndarray, right: np.ndarray, block: int = 16_384) -> np.ndarray:
    """``vectors[left[i]] . vectors[right[i]]`` for every pair (the cosine of unit vectors).

    Each distinct pair of rows is computed once and copied to every place it occurs, so
    two windows with the same text get bit-identical similarities (an AUROC counts them
    as a tie, as it would comparing one vector with itself) and repeated pairs cost
    nothing; the gathered rows are ``block`` pairs at a time, a bounded chunk."""
    import numpy as np  # numpy only once vectors are made: the CLI's --help stays light

    if left.shape != right.shape or left.ndim != 1:
        raise FeaturelensError("pair_cosines needs as many left rows as right rows; pass one-dimensional "
                               "index arrays of the same length.")
    rows = max(int(vectors.shape[0]), 1)
    low, high = np.minimum(left, right).astype(np.int64), np.maximum(left, right).astype(np.int64)
    pairs, where = np.unique(low * rows + high, return_inverse=True)
    first, second = pairs // rows, pairs % rows
    values = np.empty(pairs.shape[0], dtype=np.float32)
    for start in range(0, pairs.shape[0], block):
        stop = start + block
        values[start:stop] = np.einsum("ij,ij->i", vectors[first[start:stop]], vectors[second[start:stop]])
    return values[where.reshape(-1)]
