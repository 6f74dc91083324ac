"""The SAELens families read by name from hand-built Hugging Face cache folders in their
real layouts (file names, config keys, tensor names and shapes as SAELens's loaders read
them): Gemma Scope 2, Llama Scope, mwhanna's per-layer transcoders and one layer of a
cross-layer transcoder encode as their formulas say; temporal SAEs are refused. The slow
tests/core/test_saelens_families.py compares the same layouts with SAELens itself."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from featurelens.core.dictionaries.loading import load_dictionary
from featurelens.core.errors import FeaturelensError

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class Width:
    def __init__(self, d_in: int) -> None:
        self.d_in, self.model_id = d_in, "stand-in"

    def hookpoint_width(self, hookpoint: str) -> int:
        return self.d_in


def snapshot(cache: Path, repo: str) -> Path:
    base = cache / f"models--{repo.replace('/', '--')}"
    (base / "refs").mkdir(parents=True, exist_ok=True)
    (base / "refs" / "main").write_text(COMMIT)
    folder = base / "snapshots" / COMMIT
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def table(monkeypatch: pytest.MonkeyPatch, entries: dict[str, dict]) -> None:
    """sae_lens's table lookup, stood in by a module of the same shape."""
    lookups = {name: types.SimpleNamespace(**{"config_overrides": None, "norm_scaling_factor": {}, **entry})
               for name, entry in entries.items()}
    module = types.ModuleType("sae_lens.loading.pretrained_saes_directory")
    module.get_pretrained_saes_directory = lambda: lookups
    for name in ("sae_lens", "sae_lens.loading"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "sae_lens.loading.pretrained_saes_directory", module)


def jump(h: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    return torch.relu(h) * (h > threshold)


def test_gemma_scope_2_sae_and_affine_transcoder(hf_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = snapshot(hf_cache, "google/gemma-scope-2-4b-pt")
    g = torch.Generator().manual_seed(0)
    made = {}
    for folder, skip in (("resid_post/layer_9_width_16k_l0_small", False),
                         ("transcoder/layer_9_width_16k_l0_small_affine", True)):
        (repo / folder).mkdir(parents=True)
        t = {"w_enc": torch.randn(8, 32, generator=g), "w_dec": torch.randn(32, 8, generator=g),
             "b_enc": torch.randn(32, generator=g), "b_dec": torch.randn(8, generator=g),
             "threshold": torch.rand(32, generator=g)}
        if skip:
            t["affine_skip_connection"] = torch.randn(8, 8, generator=g)
        save_file(t, str(repo / folder / "params.safetensors"))
        made[folder] = t
    (repo / "resid_post/layer_9_width_16k_l0_small/config.json").write_text(json.dumps(
        {"architecture": "jump_relu", "model_name": "gemma-v3-4b-pt", "hf_hook_point_in": "model.layers.9.output"}))
    table(monkeypatch, {"res": {"repo_id": "google/gemma-scope-2-4b-pt", "conversion_func": "gemma_3",
                                "saes_map": {"l9": "resid_post/layer_9_width_16k_l0_small"}},
                        "tc": {"repo_id": "google/gemma-scope-2-4b-pt", "conversion_func": "gemma_3",
                               "saes_map": {"l9a": "transcoder/layer_9_width_16k_l0_small_affine"}}})
    x = torch.randn(5, 8, generator=g)
    sae = load_dictionary("saelens:res/l9", backend=Width(8), hookpoint="blocks.9.hook_resid_post")
    t = made["resid_post/layer_9_width_16k_l0_small"]
    assert not sae.is_transcoder
    assert torch.allclose(sae.encode(x), jump(x @ t["w_enc"] + t["b_enc"], t["threshold"]), atol=1e-5)
    tc = load_dictionary("saelens:tc/l9a", backend=Width(8), hookpoint="blocks.9.ln2.hook_normalized")
    t = made["transcoder/layer_9_width_16k_l0_small_affine"]
    assert tc.is_transcoder and torch.equal(tc.W_skip, t["affine_skip_connection"].T)
    f = jump(x @ t["w_enc"] + t["b_enc"], t["threshold"])
    assert torch.allclose(tc.encode(x), f, atol=1e-5)
    assert torch.allclose(tc.decode(f), f @ t["w_dec"] + t["b_dec"], atol=1e-4)


def _llama_scope(folder: Path, g: torch.Generator, *, hyper: bool) -> dict[str, torch.Tensor]:
    t = {"encoder.weight": torch.randn(32, 8, generator=g) * 0.05, "encoder.bias": torch.randn(32, generator=g) * 0.1,
         "decoder.weight": torch.randn(8, 32, generator=g), "decoder.bias": torch.randn(8, generator=g)}
    if hyper:
        (folder / "checkpoints").mkdir(parents=True)
        save_file(t, str(folder / "checkpoints" / "final.safetensors"))
        (folder / "hyperparams.json").write_text(json.dumps({
            "d_model": 8, "d_sae": 32, "hook_point_in": "blocks.3.hook_resid_post", "jump_relu_threshold": 0.2,
            "dataset_average_activation_norm": {"in": 2.0, "out": 2.0}}))
    else:
        folder.mkdir(parents=True)
        t["log_jumprelu_threshold"] = torch.randn(32, generator=g) - 2
        save_file(t, str(folder / "sae_weights.safetensors"))
        (folder / "config.json").write_text(json.dumps({"d_model": 8, "expansion_factor": 4,
                                                         "hook_point_in": "blocks.3.hook_resid_post"}))
    return t


def test_llama_scope_folds_the_tables_scale(hf_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    g = torch.Generator().manual_seed(1)
    repo = snapshot(hf_cache, "fnlp/Llama3_1-8B-Base-LXR-8x")
    t = _llama_scope(repo / "Llama3_1-8B-Base-L3R-8x", g, hyper=True)
    r1 = snapshot(hf_cache, "fnlp/Llama-Scope-R1-Distill")
    t1 = _llama_scope(r1 / "800M/L3R", g, hyper=False)
    table(monkeypatch, {
        "lxr": {"repo_id": "fnlp/Llama3_1-8B-Base-LXR-8x", "conversion_func": "llama_scope",
                "saes_map": {"l3r": "Llama3_1-8B-Base-L3R-8x", "l4r": "absent"}, "norm_scaling_factor": {"l3r": 3.0}},
        "r1": {"repo_id": "fnlp/Llama-Scope-R1-Distill", "conversion_func": "llama_scope_r1_distill",
               "saes_map": {"l3r": "800M/L3R"}, "norm_scaling_factor": {"l3r": 5.0}}})
    x = torch.randn(6, 8, generator=g) * 3
    sae = load_dictionary("saelens:lxr/l3r", backend=Width(8), hookpoint="blocks.3.hook_resid_post")
    h = 3.0 * x @ t["encoder.weight"].T + t["encoder.bias"]
    assert torch.allclose(sae.encode(x), jump(h, torch.tensor(0.2 * 8 ** 0.5 / 2.0)), atol=1e-5)
    assert sae.hookpoint == "blocks.3.hook_resid_post" and sae.format == "llama_scope"
    assert torch.allclose(sae.W_dec, t["decoder.weight"].T / 3.0)
    plain = load_dictionary(str(repo / "Llama3_1-8B-Base-L3R-8x"), backend=Width(8), hookpoint="x")
    h = (8 ** 0.5 / 2.0) * x @ t["encoder.weight"].T + t["encoder.bias"]  # the folder's own scale
    assert torch.allclose(plain.encode(x), jump(h, torch.tensor(0.2 * 8 ** 0.5 / 2.0)), atol=1e-5)
    named = load_dictionary("saelens:r1/l3r", backend=Width(8), hookpoint="x")
    h = 5.0 * x @ t1["encoder.weight"].T + t1["encoder.bias"]
    assert torch.allclose(named.encode(x), jump(h, t1["log_jumprelu_threshold"].exp()), atol=1e-5)
    with pytest.raises(FeaturelensError, match="does not record the scale") as error:
        load_dictionary(str(r1 / "800M/L3R"), backend=Width(8), hookpoint="x")
    assert "\n" not in str(error.value)
    with pytest.raises(FeaturelensError, match="gives no norm_scaling_factor"):
        load_dictionary("saelens:lxr/l4r", backend=Width(8), hookpoint="x")


def test_mwhanna_file_and_one_clt_layer(hf_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    g = torch.Generator().manual_seed(2)
    repo = snapshot(hf_cache, "mwhanna/qwen3-4b-transcoders")
    t = {"W_enc": torch.randn(24, 8, generator=g), "b_enc": torch.randn(24, generator=g),
         "W_dec": torch.randn(24, 8, generator=g), "b_dec": torch.randn(8, generator=g)}
    save_file(t, str(repo / "layer_3.safetensors"))
    clt = snapshot(hf_cache, "mntss/clt-gemma-2-2b-2.5M")
    enc = {"W_enc_1": torch.randn(24, 8, generator=g), "b_enc_1": torch.randn(24, generator=g),
           "b_dec_1": torch.randn(8, generator=g), "threshold_1": torch.rand(24, generator=g)}
    dec = torch.randn(24, 3, 8, generator=g)
    save_file(enc, str(clt / "W_enc_1.safetensors"))
    save_file({"W_dec_1": dec}, str(clt / "W_dec_1.safetensors"))
    table(monkeypatch, {
        "mw": {"repo_id": "mwhanna/qwen3-4b-transcoders", "conversion_func": "mwhanna_transcoder",
               "saes_map": {"layer_3": "layer_3.safetensors"}},
        "clt": {"repo_id": "mntss/clt-gemma-2-2b-2.5M", "conversion_func": "mntss_clt_layer_transcoder",
                "saes_map": {"layer_1": "1", "layer_2": "2"}},
        "pinned": {"repo_id": "mwhanna/qwen3-4b-transcoders", "conversion_func": "mwhanna_transcoder",
                   "saes_map": {"layer_3": "layer_3.safetensors"}, "config_overrides": {"revision": "abc"}},
        "temporal": {"repo_id": "canrager/temporalSAEs", "conversion_func": "temporal",
                     "saes_map": {"blocks.12.hook_resid_post": "gemma-2-2B/layer_12/temporal"}}})
    x = torch.randn(5, 8, generator=g)
    mw = load_dictionary("saelens:mw/layer_3", backend=Width(8), hookpoint="blocks.3.ln2.hook_normalized")
    assert mw.is_transcoder and mw.format == "circuit_tracer"
    assert torch.allclose(mw.encode(x), torch.relu(x @ t["W_enc"].T + t["b_enc"]), atol=1e-5)
    layer = load_dictionary("saelens:clt/layer_1", backend=Width(8), hookpoint="blocks.1.hook_resid_mid")
    assert torch.allclose(layer.encode(x), jump(x @ enc["W_enc_1"].T + enc["b_enc_1"], enc["threshold_1"]), atol=1e-5)
    assert torch.allclose(layer.W_dec, dec.sum(dim=1), atol=1e-5)
    with pytest.raises(FeaturelensError, match=r"hf download mntss/clt-gemma-2-2b-2.5M W_enc_2.safetensors"):
        load_dictionary("saelens:clt/layer_2", backend=Width(8), hookpoint="x")
    # config_overrides of the new families go through the same check: honoured, or one sentence
    with pytest.raises(FeaturelensError, match="overrides revision='abc' for this release, which featurelens does "
                                               "not reproduce") as error:
        load_dictionary("saelens:pinned/layer_3", backend=Width(8), hookpoint="x")
    assert "\n" not in str(error.value)
    with pytest.raises(FeaturelensError, match="attends over earlier tokens") as error:
        load_dictionary("saelens:temporal/blocks.12.hook_resid_post", backend=Width(8), hookpoint="x")
    assert "\n" not in str(error.value)


def test_a_saelens_weights_file_is_not_taken_for_a_circuit_tracer_file(tmp_path: Path) -> None:
    from featurelens.plugins.formats.transcoder_sets import CircuitTracerFormat

    save_file({"W_enc": torch.zeros(8, 24), "b_enc": torch.zeros(24), "W_dec": torch.zeros(24, 8),
               "b_dec": torch.zeros(8)}, str(tmp_path / "sae_weights.safetensors"))
    assert not CircuitTracerFormat().detect(str(tmp_path / "sae_weights.safetensors"))
    save_file({"W_enc_0": torch.zeros(24, 8)}, str(tmp_path / "W_enc_0.safetensors"))
    assert not CircuitTracerFormat().detect(str(tmp_path / "W_enc_0.safetensors"))  # no W_dec_0 beside it
