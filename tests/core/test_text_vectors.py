"""The text-vector cache: each distinct text embedded once, bounded, same vectors as the model."""

from __future__ import annotations

import numpy as np
import pytest

import featurelens.core.model.sentence_embedding as sentence_embedding
from featurelens.core.errors import FeaturelensError
from featurelens.core.model.text_vectors import TextVectors, pair_cosines


def test_repeated_texts_are_embedded_once_and_match_the_model(monkeypatch) -> None:
    path = str(sentence_embedding.default_model_path())
    original, calls = sentence_embedding.embed, []
    monkeypatch.setattr(sentence_embedding, "embed",
                        lambda texts, p, **kw: calls.append(list(texts)) or original(texts, p, **kw))
    cache = TextVectors(path, capacity=2)
    texts = ["the cat sat", " self", "the cat sat", "a longer window of text about rivers", " self"]
    vectors, index = cache.lookup(texts)
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert calls == [["the cat sat", " self", "a longer window of text about rivers"]]  # distinct, once each
    alone = original(texts, path).numpy()
    assert np.abs(vectors[index] - alone).max() < 1e-5
    assert len(cache) == 2 and (cache.embedded, cache.reused) == (3, 0)  # bounded: the oldest dropped
    again, again_index = cache.lookup(["the cat sat", " self"])
    assert len(calls) == 2 and calls[1] == ["the cat sat"]  # the first kept (least recently used) was dropped
    assert np.abs(again[again_index] - alone[[0, 1]]).max() < 1e-5
    assert (cache.embedded, cache.reused) == (4, 1)


def test_pair_cosines_in_blocks() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((5, 8)).astype(np.float32)
    left, right = rng.integers(0, 5, 11), rng.integers(0, 5, 11)
    expected = (vectors[left] * vectors[right]).sum(1)
    assert np.allclose(pair_cosines(vectors, left, right, block=3), expected, atol=1e-5)
    with pytest.raises(FeaturelensError, match="same length"):
        pair_cosines(vectors, left, right[:-1])


def test_the_same_pair_gets_the_same_value_wherever_it_occurs() -> None:
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((4, 37)).astype(np.float32)
    left = np.array([0, 1, 0, 2, 1, 3, 0])
    right = np.array([1, 0, 1, 2, 3, 1, 1])
    values = pair_cosines(vectors, left, right, block=2)
    assert values[0] == values[1] == values[2] == values[6]  # (0, 1) either way round: one value
    assert values[4] == values[5]
    assert np.isclose(values[3], float(vectors[2] @ vectors[2]), rtol=1e-5)


def test_embed_batches_by_token_length_and_keeps_each_texts_vector() -> None:
    path = str(sentence_embedding.default_model_path())
    _, model = sentence_embedding._load(path, "cpu")
    texts = ["a long window of text about the rivers and hills of the north", "hi",
             "another long window of text about lakes, roads and the towns between them", "cat"]
    widths: list[tuple[int, int]] = []
    hook = model.register_forward_pre_hook(lambda _, args, kwargs: widths.append(tuple(kwargs["input_ids"].shape)),
                                           with_kwargs=True)
    try:
        together = sentence_embedding.embed(texts, path, batch_size=2).numpy()
    finally:
        hook.remove()
    assert [rows for rows, _ in widths] == [2, 2]
    assert widths[0][1] <= 4 < widths[1][1]  # the two short texts share a batch, padded to their own length
    alone = np.stack([sentence_embedding.embed([text], path).numpy()[0] for text in texts])
    assert together.shape == (4, 384) and np.abs(together - alone).max() < 1e-6
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-6)
    assert sentence_embedding.embed([], path).shape == (0, 384)


def test_the_model_runs_where_asked_and_refuses_a_missing_gpu() -> None:
    import torch

    path = str(sentence_embedding.default_model_path())
    assert sentence_embedding.embedding_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    on_cpu = sentence_embedding.embed(["a cat", "the river"], path, device="cpu").numpy()
    auto = sentence_embedding.embed(["a cat", "the river"], path).numpy()
    assert on_cpu.shape == (2, 384) and np.abs(on_cpu - auto).max() < 1e-5
    if not torch.cuda.is_available():
        with pytest.raises(FeaturelensError, match="no CUDA GPU"):
            sentence_embedding.embed(["a cat"], path, device="cuda")


def test_remembered_vectors_are_kept_without_embedding(monkeypatch) -> None:
    import torch

    calls: list[list[str]] = []
    monkeypatch.setattr(sentence_embedding, "embed", lambda texts, path, **kw: calls.append(list(texts)) or
                        torch.ones(len(texts), 3))
    cache = TextVectors("unused", capacity=4)
    stored = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=np.float32)
    assert cache.remember(["a", "b"], stored) == 2 and cache.remember(["a"], stored[:1]) == 0
    vectors, index = cache.lookup(["b", "c", "a"])
    assert calls == [["c"]]  # only the text nobody stored went to the model
    assert vectors[index[0]].tolist() == [0.0, 1.0, 0.0] and vectors[index[2]].tolist() == [1.0, 0.0, 0.0]
    with pytest.raises(FeaturelensError, match="one vector a text"):
        cache.remember(["a", "b"], stored[:1])
