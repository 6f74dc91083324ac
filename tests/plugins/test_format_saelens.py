"""SAELens format: encodes exactly as SAELens's formulas on weights written here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from featurelens.core.errors import FeaturelensError
from featurelens.core.host.manager import create
from featurelens.plugins.formats.saelens import SAELensFormat

D_IN, D_SAE, D_OUT = 8, 24, 6


def _weights(d_out: int = D_IN, seed: int = 0, **extra: tuple[int, ...]) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {
        "W_enc": torch.randn(D_IN, D_SAE, generator=g), "b_enc": torch.randn(D_SAE, generator=g) * 0.1,
        "W_dec": torch.randn(D_SAE, d_out, generator=g) * (torch.rand(D_SAE, 1, generator=g) + 0.5),
        "b_dec": torch.randn(d_out, generator=g),
    }
    for name, shape in extra.items():
        out[name] = torch.rand(*shape, generator=g) * 0.5
    return out


def _write(folder: Path, cfg: dict, tensors: dict[str, torch.Tensor]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cfg.json").write_text(json.dumps(cfg))
    save_file(tensors, str(folder / "sae_weights.safetensors"))
    return folder


def _cfg(architecture: str, **extra) -> dict:
    cfg = {"architecture": architecture, "d_in": D_IN, "d_sae": D_SAE, "dtype": "float32",
           "apply_b_dec_to_input": True, "normalize_activations": "none",
           "metadata": {"model_name": "tiny", "hook_name": "blocks.1.hook_resid_post"}}
    cfg.update(extra)
    return cfg


# Independent reference computations of SAELens's encode, written from its formulas.
def _ref_pre(w: dict, x: torch.Tensor, apply_b_dec: bool) -> torch.Tensor:
    sae_in = x - w["b_dec"] if apply_b_dec else x
    return sae_in @ w["W_enc"] + w["b_enc"]


def _ref_topk(w, x, k, rescale):
    h = _ref_pre(w, x, True)
    if rescale:
        h = h * w["W_dec"].norm(dim=-1)
    top = torch.topk(h, k, dim=-1)
    return torch.zeros_like(h).scatter(-1, top.indices, torch.relu(top.values))


@pytest.mark.parametrize("rescale", [False, True])
def test_topk_encodes_and_decodes_like_saelens(tmp_path: Path, rescale: bool) -> None:
    w = _weights()
    folder = _write(tmp_path / "sae", _cfg("topk", k=5, rescale_acts_by_decoder_norm=rescale), w)
    fmt = SAELensFormat()
    assert fmt.detect(str(folder))
    sae = fmt.load(str(folder))
    x = torch.randn(30, D_IN)
    expected = _ref_topk(w, x, 5, rescale)
    assert torch.allclose(sae.encode(x), expected, atol=1e-5)
    scale = 1 / w["W_dec"].norm(dim=-1) if rescale else 1.0
    assert torch.allclose(sae.decode(expected), (expected * scale) @ w["W_dec"] + w["b_dec"], atol=1e-5)
    assert torch.allclose(sae.decode_sparse(sae.encode_sparse(x)), sae.decode(expected), atol=1e-5)
    assert sae.hookpoint == "blocks.1.hook_resid_post" and sae.model_id == "tiny" and sae.k == 5


def test_standard_and_jumprelu_and_pre6_flat_config(tmp_path: Path) -> None:
    w = _weights()
    flat = {"d_in": D_IN, "d_sae": D_SAE, "hook_point": "blocks.0.hook_resid_pre", "model_name": "gpt2",
            "apply_b_dec_to_input": False, "dtype": "torch.float32"}
    sae = SAELensFormat().load(str(_write(tmp_path / "old", flat, w)))
    x = torch.randn(20, D_IN)
    assert sae.architecture == "relu" and sae.hookpoint == "blocks.0.hook_resid_pre"
    assert torch.allclose(sae.encode(x), torch.relu(_ref_pre(w, x, False)), atol=1e-5)

    wj = _weights(threshold=(D_SAE,))
    jr = SAELensFormat().load(str(_write(tmp_path / "jr", _cfg("jumprelu"), wj)))
    h = _ref_pre(wj, x, True)
    assert torch.allclose(jr.encode(x), torch.relu(h) * (h > wj["threshold"]), atol=1e-5)


@pytest.mark.parametrize("architecture", ["transcoder", "skip_transcoder", "jumprelu_transcoder"])
def test_transcoders(tmp_path: Path, architecture: str) -> None:
    extra = {"threshold": (D_SAE,)} if architecture == "jumprelu_transcoder" else {}
    w = _weights(d_out=D_OUT, **extra)
    if architecture == "skip_transcoder":
        w["W_skip"] = torch.randn(D_OUT, D_IN)
    cfg = _cfg(architecture, d_out=D_OUT, apply_b_dec_to_input=False, hook_name_out="blocks.1.hook_mlp_out")
    tc = SAELensFormat().load(str(_write(tmp_path / architecture, cfg, w)))
    x = torch.randn(15, D_IN)
    h = x @ w["W_enc"] + w["b_enc"]
    f = torch.relu(h) * (h > w["threshold"]) if "threshold" in w else torch.relu(h)
    out = f @ w["W_dec"] + w["b_dec"] + (x @ w["W_skip"].T if "W_skip" in w else 0)
    assert torch.allclose(tc.encode(x), f, atol=1e-5)
    assert torch.allclose(tc(x), out, atol=1e-4)
    assert tc.config["hookpoint_out"] == "blocks.1.hook_mlp_out"


def test_sparsity_file_is_read(tmp_path: Path) -> None:
    folder = _write(tmp_path / "s", _cfg("standard"), _weights())
    save_file({"sparsity": torch.full((D_SAE,), -3.0)}, str(folder / "sparsity.safetensors"))
    sae = SAELensFormat().load(str(folder))
    assert torch.equal(sae.log_feature_density, torch.full((D_SAE,), -3.0))


@pytest.mark.parametrize("name, options", [
    ("topk", {"k": 4}), ("relu", {}), ("jumprelu", {}), ("batchtopk", {"k": 4}),
    ("transcoder", {"activation": "relu", "skip": True, "d_out": D_OUT}),
    ("transcoder", {"activation": "jumprelu", "d_out": D_OUT}),
])
def test_round_trip_keeps_the_encoding(tmp_path: Path, name: str, options: dict) -> None:
    torch.manual_seed(0)
    model = create("dictionary_learner", name, D_IN, D_SAE, hookpoint="blocks.0.hook_resid_post",
                   model_id="m", **options)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        if name == "batchtopk":
            model.threshold.fill_(0.3)
        if hasattr(model, "threshold") and name != "batchtopk":
            model.threshold.uniform_(0.0, 0.3)
    fmt = SAELensFormat()
    fmt.save(model, str(tmp_path / "out"))
    loaded = fmt.load(str(tmp_path / "out"))
    x = torch.randn(25, D_IN)
    assert torch.allclose(loaded.encode(x), model.encode(x), atol=1e-5)
    assert torch.allclose(loaded(x), model(x), atol=1e-5)
    assert loaded.hookpoint == "blocks.0.hook_resid_post"


def test_topk_transcoder_cannot_be_saved_as_saelens(tmp_path: Path) -> None:
    tc = create("dictionary_learner", "transcoder", D_IN, D_SAE, k=3)
    with pytest.raises(FeaturelensError, match="SAELens has no topk transcoder"):
        SAELensFormat().save(tc, str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("mutate, words", [
    (lambda cfg, w: w.pop("b_enc"), "has no tensor 'b_enc'"),
    (lambda cfg, w: w.__setitem__("W_dec", torch.zeros(D_SAE, D_IN + 1)), "has shape"),
    (lambda cfg, w: cfg.__setitem__("architecture", "gated"), "'gated' SAE, which featurelens cannot load"),
    (lambda cfg, w: cfg.__setitem__("normalize_activations", "expected_average_only_in"), "normalises activations"),
    (lambda cfg, w: (cfg.pop("d_sae"), cfg.update(num_latents=24, expansion_factor=3)), "mixes two formats"),
    (lambda cfg, w: w.pop("threshold") if cfg["architecture"] == "jumprelu" else cfg.__setitem__("architecture", "jumprelu"), "has no tensor 'threshold'"),
    (lambda cfg, w: cfg.__setitem__("d_in", "eight"), "integer 'd_in'"),
])
def test_bad_checkpoints_get_one_sentence(tmp_path: Path, mutate, words: str) -> None:
    cfg, w = _cfg("standard"), _weights()
    mutate(cfg, w)
    folder = _write(tmp_path / "bad", cfg, w)
    with pytest.raises(FeaturelensError, match=words):
        SAELensFormat().load(str(folder))


def test_corrupt_files(tmp_path: Path) -> None:
    folder = _write(tmp_path / "c", _cfg("standard"), _weights())
    (folder / "cfg.json").write_text("{not json")
    with pytest.raises(FeaturelensError, match="not valid JSON"):
        SAELensFormat().load(str(folder))
    (folder / "cfg.json").write_text(json.dumps(_cfg("standard")))
    (folder / "sae_weights.safetensors").write_bytes(b"garbage")
    with pytest.raises(FeaturelensError, match="not a readable safetensors file"):
        SAELensFormat().load(str(folder))


#: The keys of a SAELens training config written before 6.0, as the gpt2-small-res-jb
#: release has them (flat, hook_point, expansion_factor and the other training keys).
PRE6_CFG = {
    "model_name": "gpt2-small", "hook_point": "blocks.0.hook_resid_pre", "hook_point_layer": 0,
    "hook_point_head_index": None, "d_in": D_IN, "dataset_path": "Skylion007/openwebtext",
    "is_dataset_tokenized": False, "context_size": 128, "use_cached_activations": False,
    "d_sae": D_SAE, "b_dec_init_method": "geometric_median", "expansion_factor": 3,
    "from_pretrained_path": None, "l1_coefficient": 8e-05, "lr": 0.0004, "lr_scheduler_name": None,
    "lr_warm_up_steps": 5000, "train_batch_size": 4096, "n_batches_in_buffer": 128,
    "total_training_tokens": 300000000, "store_batch_size": 32, "use_ghost_grads": True,
    "feature_sampling_window": 1000, "dead_feature_window": 5000, "dead_feature_threshold": 1e-08,
    "log_to_wandb": True, "device": "mps", "seed": 42, "n_checkpoints": 10, "dtype": "torch.float32",
}


def test_pre6_flat_config_with_expansion_factor_loads(tmp_path: Path) -> None:
    """Every pre-6 training config has expansion_factor; it is SAELens's, not sparsify's."""
    w = _weights()
    folder = _write(tmp_path / "blocks.0.hook_resid_pre", dict(PRE6_CFG), w)
    sae = SAELensFormat().load(str(folder))
    x = torch.randn(5, D_IN)
    assert torch.allclose(sae.encode(x), torch.relu(_ref_pre(w, x, True)), atol=1e-5)
    assert sae.hookpoint == "blocks.0.hook_resid_pre" and sae.model_id == "gpt2-small"


def test_pre6_topk_from_activation_fn_kwargs(tmp_path: Path) -> None:
    w = _weights()
    cfg = {**PRE6_CFG, "activation_fn_str": "topk", "activation_fn_kwargs": {"k": 4},
           "normalize_activations": False}
    sae = SAELensFormat().load(str(_write(tmp_path / "t", cfg, w)))
    x = torch.randn(5, D_IN)
    assert torch.allclose(sae.encode(x), _ref_topk(w, x, 4, False), atol=1e-5)
    cfg["normalize_activations"] = True  # pre-6 spelling of expected_average_only_in
    with pytest.raises(FeaturelensError, match="normalises activations"):
        SAELensFormat().load(str(_write(tmp_path / "n", cfg, w)))
    cfg.update(normalize_activations=False, activation_fn_str="tanh-relu")
    with pytest.raises(FeaturelensError, match="activation_fn_str='tanh-relu'"):
        SAELensFormat().load(str(_write(tmp_path / "a", cfg, w)))
