"""sparsify format: bf16 weights, num_latents 0, transcoders, skip, folder per hookpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from featurelens.core.errors import FeaturelensError
from featurelens.core.host.manager import create
from featurelens.plugins.formats.sparsify import SparsifyFormat

D_IN, N = 8, 32


def _write(folder: Path, cfg: dict, tensors: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cfg.json").write_text(json.dumps(cfg))
    save_file(tensors, str(folder / "sae.safetensors"))
    return folder


def _tensors(dtype=torch.bfloat16, skip=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = {"encoder.weight": torch.randn(N, D_IN, generator=g), "encoder.bias": torch.randn(N, generator=g) * 0.1,
         "W_dec": torch.randn(N, D_IN, generator=g), "b_dec": torch.randn(D_IN, generator=g)}
    if skip:
        t["W_skip"] = torch.randn(D_IN, D_IN, generator=g)
    return {k: v.to(dtype) for k, v in t.items()}


def _ref_encode(t: dict, x: torch.Tensor, k: int, transcode: bool) -> torch.Tensor:
    """sparsify: topk(relu(linear(x - b_dec))) in the weights' dtype."""
    sae_in = x.to(t["encoder.weight"].dtype)
    if not transcode:
        sae_in = sae_in - t["b_dec"]
    acts = torch.relu(F.linear(sae_in, t["encoder.weight"], t["encoder.bias"]))
    top = acts.topk(k, sorted=False)
    return torch.zeros_like(acts).scatter(-1, top.indices, top.values)


def test_bf16_sae_with_num_latents_zero(tmp_path: Path) -> None:
    t = _tensors()
    root = tmp_path / "run"
    _write(root / "layers.3", {"expansion_factor": 4, "num_latents": 0, "k": 5, "transcode": False,
                               "skip_connection": False, "d_in": D_IN}, t)
    fmt = SparsifyFormat()
    assert fmt.detect(str(root)) and fmt.detect(str(root / "layers.3"))
    sae = fmt.load(str(root))
    assert sae.W_enc.dtype == torch.bfloat16 and sae.d_sae == N
    assert sae.hookpoint == "blocks.3.hook_resid_post"
    x = torch.randn(40, D_IN)
    expected = _ref_encode(t, x, 5, False)
    got = sae.encode(x)
    assert got.dtype == torch.bfloat16
    assert torch.allclose(got.float(), expected.float(), atol=2e-2, rtol=2e-2)
    assert ((got > 0) == (expected > 0)).float().mean() > 0.97  # same support up to bf16 ties
    f32 = fmt.load(str(root), dtype="float32")
    assert f32.W_enc.dtype == torch.float32


def test_skip_transcoder(tmp_path: Path) -> None:
    t = _tensors(dtype=torch.float32, skip=True)
    folder = _write(tmp_path / "layers.1.mlp", {"num_latents": N, "k": 4, "transcode": True,
                                                  "skip_connection": True}, t)
    tc = SparsifyFormat().load(str(folder))
    assert tc.is_transcoder and tc.hookpoint == "blocks.1.ln2.hook_normalized"
    x = torch.randn(20, D_IN)
    f = _ref_encode(t, x, 4, True)
    assert torch.allclose(tc.encode(x), f, atol=1e-5)
    out = f @ t["W_dec"] + t["b_dec"] + x @ t["W_skip"].T
    assert torch.allclose(tc(x), out, atol=1e-4)


def test_round_trip_and_layout(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create("dictionary_learner", "topk", D_IN, N, k=3, hookpoint="blocks.2.hook_resid_post")
    SparsifyFormat().save(model, str(tmp_path / "out"))
    assert (tmp_path / "out" / "layers.2" / "sae.safetensors").is_file()
    cfg = json.loads((tmp_path / "out" / "layers.2" / "cfg.json").read_text())
    assert cfg["num_latents"] == N and cfg["k"] == 3 and cfg["transcode"] is False
    loaded = SparsifyFormat().load(str(tmp_path / "out"))
    x = torch.randn(10, D_IN)
    assert torch.allclose(loaded.encode(x), model.encode(x), atol=1e-5)


def test_several_hookpoints_need_a_choice(tmp_path: Path) -> None:
    cfg = {"num_latents": N, "k": 2}
    _write(tmp_path / "r" / "layers.0", cfg, _tensors())
    _write(tmp_path / "r" / "layers.1", cfg, _tensors(seed=1))
    with pytest.raises(FeaturelensError, match="2 hookpoints"):
        SparsifyFormat().load(str(tmp_path / "r"))
    chosen = SparsifyFormat().load(str(tmp_path / "r"), hookpoint="blocks.1.hook_resid_post")
    assert chosen.hookpoint == "blocks.1.hook_resid_post"


@pytest.mark.parametrize("cfg, mutate, words", [
    ({"num_latents": 16, "k": 2}, None, "implies 16 latents"),
    ({"num_latents": 0, "k": 2}, None, "no positive expansion_factor"),
    ({"num_latents": N, "k": 2, "skip_connection": True}, None, "has no tensor 'W_skip'"),
    ({"num_latents": N, "k": 2, "activation": "groupmax"}, None, "groupmax"),
    ({"num_latents": N, "k": 2}, lambda t: t.pop("b_dec"), "has no tensor 'b_dec'"),
    ({"architecture": "topk", "d_sae": N, "d_in": D_IN}, None, "mixes two formats"),
])
def test_bad_checkpoints(tmp_path: Path, cfg: dict, mutate, words: str) -> None:
    t = _tensors()
    if mutate:
        mutate(t)
    folder = _write(tmp_path / "layers.0", cfg, t)
    with pytest.raises(FeaturelensError, match=words):
        SparsifyFormat().load(str(folder))


def test_only_topk_dictionaries_are_written(tmp_path: Path) -> None:
    with pytest.raises(FeaturelensError, match="sparsify stores TopK dictionaries only"):
        SparsifyFormat().save(create("dictionary_learner", "relu", D_IN, N), str(tmp_path / "o"))
