"""Dictionary architectures: shapes, exact sparse-aware gradients, thresholds, bad input."""

from __future__ import annotations

import pytest
import torch

from featurelens.core.errors import FeaturelensError
from featurelens.core.host.manager import create, get_registry
from featurelens.plugins.dictionaries import BatchTopKSAE, JumpReluSAE, ReluSAE, TopKSAE
from featurelens.plugins.dictionaries.sae import SparseAutoencoder, geometric_median

ARCHITECTURES = ["topk", "batchtopk", "relu", "jumprelu", "transcoder"]


def test_builtins_are_registered_through_the_hook() -> None:
    names = get_registry().names("dictionary_learner")
    for name in ARCHITECTURES:
        assert name in names
        assert get_registry().get("dictionary_learner", name).plugin == "featurelens.plugins.dictionaries"


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_every_architecture_encodes_decodes_and_trains(name: str) -> None:
    torch.manual_seed(0)
    model = create("dictionary_learner", name, 12, 48, k=4) if name in ("topk", "batchtopk", "transcoder") \
        else create("dictionary_learner", name, 12, 48)
    x = torch.randn(30, 12)
    f = model.encode(x)
    assert f.shape == (30, 48) and bool((f >= 0).all())
    assert model(x).shape == (30, 12)
    out = model.loss(x, dead_mask=torch.ones(48, dtype=torch.bool))
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    assert model.W_enc.grad is not None and model.W_enc.grad.abs().sum() > 0
    assert out["fired"].shape == (48,) and out["fired"].dtype == torch.bool
    # encode on [batch, seq, d] keeps the leading shape
    assert model.encode(torch.randn(2, 5, 12)).shape == (2, 5, 48)


@pytest.mark.parametrize("chunk_elements", [1 << 23, 64 * 7])
def test_topk_sparse_training_gradients_equal_the_dense_computation(
        chunk_elements: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from featurelens.plugins.dictionaries import topk

    monkeypatch.setattr(topk, "CHUNK_ELEMENTS", chunk_elements)  # 7 rows per block: many blocks
    torch.manual_seed(1)
    model = TopKSAE(16, 64, k=5, skip=True)
    with torch.no_grad():
        model.W_skip.normal_()
        model.b_dec.normal_()
        model.b_enc.normal_()
    x = torch.randn(40, 16)
    dead = torch.rand(64) < 0.5
    sparse = model.loss(x, dead_mask=dead)
    sparse["loss"].backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    dense = SparseAutoencoder.loss(model, x, dead_mask=dead)  # the generic dense path
    dense["loss"].backward()
    assert torch.allclose(sparse["loss"], dense["loss"], rtol=1e-5)
    assert "aux" in sparse and torch.allclose(sparse["aux"], dense["aux"], rtol=1e-4)
    for n, p in model.named_parameters():
        assert torch.allclose(grads[n], p.grad, atol=1e-4), n
    assert torch.equal(sparse["fired"], dense["fired"])


def test_topk_sparse_encode_decode_match_dense() -> None:
    torch.manual_seed(2)
    for rescale in (False, True):
        model = TopKSAE(8, 40, k=3, rescale_acts_by_decoder_norm=rescale)
        with torch.no_grad():
            model.W_dec.mul_(torch.rand(40, 1) + 0.5)
        x = torch.randn(25, 8)
        acts = model.encode_sparse(x)
        assert acts.indices.shape == (25, 3)
        assert torch.allclose(acts.to_dense(40), model.encode(x), atol=1e-6)
        assert torch.allclose(model.decode_sparse(acts), model.decode(model.encode(x)), atol=1e-5)
    assert model.encode_sparse(x, max_active=2).indices.shape == (25, 2)


@pytest.mark.parametrize("options", [{}, {"rescale_acts_by_decoder_norm": True}, {"fused_bias": True},
                                     {"relu_first": True}])
def test_topk_wide_encode_in_column_blocks_keeps_each_rows_top_k(
        options: dict[str, bool], monkeypatch: pytest.MonkeyPatch) -> None:
    from featurelens.plugins.dictionaries import topk

    # 2 rows of 48 features fit a block: a "wide" dictionary, taken 8 rows x 12 columns
    monkeypatch.setattr(topk, "CHUNK_ELEMENTS", 2 * 48)
    monkeypatch.setattr(topk, "MIN_ROWS", 8)
    torch.manual_seed(4)
    model = TopKSAE(12, 48, k=5, **options)
    with torch.no_grad():
        model.W_dec.mul_(torch.rand(48, 1) + 0.5)
        model.b_enc.normal_()
    x = torch.randn(21, 12)  # the last row block is partial
    acts = model.encode_sparse(x)
    assert acts.indices.shape == (21, 5)
    assert torch.allclose(acts.to_dense(48), model.encode(x), atol=1e-6)
    assert torch.equal(acts.indices.sort(dim=1).values, model.encode(x).topk(5, dim=1).indices.sort(dim=1).values)


def test_geometric_median_resists_outliers() -> None:
    torch.manual_seed(3)
    bulk = torch.randn(200, 4)
    points = torch.cat([bulk, torch.full((5, 4), 1000.0)])
    median = geometric_median(points)
    mean = points.mean(dim=0)

    def cost(c: torch.Tensor) -> float:
        return float((points - c).norm(dim=1).sum())

    assert cost(median) < cost(mean)
    for direction in torch.eye(4):  # a local minimum: small moves do not help
        assert cost(median) <= cost(median + 0.01 * direction) + 1e-3
    assert median.norm() < 1.0 < mean.norm()


def test_b_dec_initialisation_geometric_median_for_saes_mean_for_transcoders() -> None:
    x = torch.randn(100, 6) + 3.0
    sae = TopKSAE(6, 24, k=2)
    sae.initialize_from_data(x)
    assert torch.allclose(sae.b_dec, geometric_median(x), atol=1e-5)
    tc = create("dictionary_learner", "transcoder", 6, 24, k=2, d_out=4)
    target = torch.randn(100, 4) - 2.0
    tc.initialize_from_data(x, target)
    assert torch.allclose(tc.b_dec, target.mean(dim=0), atol=1e-6)


def test_unit_norm_upkeep() -> None:
    model = ReluSAE(10, 30)
    with torch.no_grad():
        model.W_dec.mul_(3.0)
    model.loss(torch.randn(20, 10))["loss"].backward()
    model.project_decoder_grad()
    parallel = (model.W_dec.grad * model.W_dec).sum(dim=1)
    assert parallel.abs().max() < 1e-4
    model.after_step()
    assert torch.allclose(model.W_dec.norm(dim=1), torch.ones(30), atol=1e-6)


def test_batchtopk_keeps_k_per_row_on_average_and_learns_a_threshold() -> None:
    torch.manual_seed(4)
    model = BatchTopKSAE(8, 32, k=3)
    x = torch.randn(50, 8)
    hidden = model.pre_acts(x)
    kept = model.train_acts(hidden)
    assert int((kept > 0).sum()) == 150
    assert float(model.threshold) > 0
    smallest = kept[kept > 0].min()
    assert torch.isclose(model.threshold, smallest)
    model.threshold.fill_(0.4)
    f = model.encode(x)
    h = model.pre_acts(x)
    assert torch.equal(f, torch.relu(h) * (h > 0.4))


def test_jumprelu_threshold_is_trained_through_the_straight_through_estimator() -> None:
    torch.manual_seed(5)
    model = JumpReluSAE(8, 32, bandwidth=1.0, initial_threshold=0.2, l0_coefficient=0.5)
    out = model.loss(torch.randn(64, 8))
    out["loss"].backward()
    assert model.threshold.grad is not None and model.threshold.grad.abs().sum() > 0
    with torch.no_grad():
        model.threshold.fill_(-1.0)
    model.after_step()
    assert float(model.threshold.detach().min()) == 0.0


def test_skip_transcoder_adds_the_linear_path() -> None:
    torch.manual_seed(6)
    tc = create("dictionary_learner", "transcoder", 6, 20, k=2, d_out=4, skip=True, activation="relu")
    assert tc.architecture == "transcoder" and tc.is_transcoder
    assert tuple(tc.W_dec.shape) == (20, 4) and tuple(tc.W_skip.shape) == (4, 6)
    with torch.no_grad():
        tc.W_skip.normal_()
    x = torch.randn(7, 6)
    assert torch.allclose(tc(x), tc.decode(tc.encode(x)) + x @ tc.W_skip.T, atol=1e-6)


@pytest.mark.parametrize("kwargs, words", [
    ({"name": "topk", "args": (8, 16), "k": 17}, "k between 1 and d_sae=16"),
    ({"name": "topk", "args": (8, 0), "k": 1}, "positive integer d_sae"),
    ({"name": "relu", "args": (-1, 16)}, "positive integer d_in"),
    ({"name": "relu", "args": (8, 16), "l1_coefficient": -1.0}, "non-negative"),
    ({"name": "transcoder", "args": (8, 16), "activation": "gelu"}, "Unknown transcoder activation"),
    ({"name": "topk", "args": (8, 16), "d_out": 4}, "apply_b_dec_to_input needs d_out == d_in"),
])
def test_bad_options_get_one_clear_sentence(kwargs: dict, words: str) -> None:
    options = dict(kwargs)
    name, args = options.pop("name"), options.pop("args")
    with pytest.raises(FeaturelensError, match=words):
        create("dictionary_learner", name, *args, **options)
