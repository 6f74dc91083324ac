"""Every dictionary format checks shapes and dtypes from file headers before allocating,
and refuses NaN or infinite weights, each in one sentence."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from featurelens.core.errors import FeaturelensError
from featurelens.core.host.manager import create
from featurelens.plugins.formats.dictionary_learning import DictionaryLearningFormat
from featurelens.plugins.formats.gemma_scope import GemmaScopeFormat
from featurelens.plugins.formats.native import MANIFEST, NativeFormat, save_native
from featurelens.plugins.formats.saelens import SAELensFormat
from featurelens.plugins.formats.sparsify import SparsifyFormat

D_IN, D_SAE = 8, 24


def _native(folder: Path) -> Path:
    save_native(create("dictionary_learner", "topk", D_IN, D_SAE, k=4), folder)
    return folder


def _edit_manifest(folder: Path, **changes) -> None:
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest.update(changes)
    (folder / MANIFEST).write_text(json.dumps(manifest))


def _one_sentence(error: pytest.ExceptionInfo) -> str:
    text = str(error.value)
    assert "\n" not in text and text.endswith(".")
    return text


@pytest.mark.parametrize("changes,needle", [
    ({"d_sae": 30_000_000}, "d_sae=30000000, which needs at least 240000000 weights, but its weights hold 416"),
    ({"d_sae": 10**12}, "needs at least 8000000000000 weights"),
    ({"d_sae": 1e12}, "d_sae=1000000000000.0; it must be a positive integer"),
    ({"d_in": "eight"}, "d_in='eight'; it must be a positive integer"),
    ({"d_in": -3}, "d_in=-3; it must be a positive integer"),
    ({"config": [1, 2]}, "config that is not a JSON object"),
])
def test_native_config_against_header(tmp_path: Path, changes: dict, needle: str):
    folder = _native(tmp_path / "d")
    _edit_manifest(folder, **changes)
    with pytest.raises(FeaturelensError) as caught:
        NativeFormat().load(str(folder))
    assert needle in _one_sentence(caught)


def _npy_bytes(shape: tuple[int, ...], dtype: str, payload: bytes) -> bytes:
    """A .npy member whose header claims ``shape`` but whose data is ``payload``."""
    header = repr({"descr": dtype, "fortran_order": False, "shape": shape}).encode()
    header += b" " * ((64 - (10 + len(header) + 1) % 64) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + payload


def test_gemma_scope_header_claiming_a_huge_array(tmp_path: Path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("W_enc.npy", _npy_bytes((1_000_000, 1_000_000), "<f4", b"\0" * 1024))
    (tmp_path / "params.npz").write_bytes(buffer.getvalue())
    with pytest.raises(FeaturelensError) as caught:
        GemmaScopeFormat().load(str(tmp_path))
    assert "claims W_enc [1000000, 1000000] (4000000000000 bytes) but stores" in _one_sentence(caught)


def test_gemma_scope_string_array(tmp_path: Path):
    np.savez(tmp_path / "params.npz", W_enc=np.array(["a", "bb"]), b_enc=np.zeros(2, np.float32))
    with pytest.raises(FeaturelensError) as caught:
        GemmaScopeFormat().load(str(tmp_path))
    assert "W_enc in" in _one_sentence(caught) and "not floating-point weights" in str(caught.value)


def test_gemma_scope_shapes_checked_before_reading(tmp_path: Path):
    rng = np.random.default_rng(0)
    arrays = {"W_enc": rng.standard_normal((D_IN, D_SAE)).astype(np.float32),
              "W_dec": rng.standard_normal((D_SAE, D_IN + 1)).astype(np.float32),
              "b_enc": np.zeros(D_SAE, np.float32), "b_dec": np.zeros(D_IN, np.float32),
              "threshold": np.zeros(D_SAE, np.float32)}
    np.savez(tmp_path / "params.npz", **arrays)
    with pytest.raises(FeaturelensError, match=r"W_dec in .* has shape \[24, 9\] but its config implies \[24, 8\]"):
        GemmaScopeFormat().load(str(tmp_path))


def _saelens(folder: Path, tensors: dict[str, torch.Tensor], **cfg) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    config = {"architecture": "standard", "d_in": D_IN, "d_sae": D_SAE, "dtype": "float32",
              "apply_b_dec_to_input": True, "normalize_activations": "none", **cfg}
    (folder / "cfg.json").write_text(json.dumps(config))
    save_file(tensors, str(folder / "sae_weights.safetensors"))
    return folder


def _weights(w_enc_fill: float | None = None) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    tensors = {"W_enc": torch.randn(D_IN, D_SAE, generator=g), "b_enc": torch.zeros(D_SAE),
               "W_dec": torch.randn(D_SAE, D_IN, generator=g), "b_dec": torch.zeros(D_IN)}
    if w_enc_fill is not None:
        tensors["W_enc"][2, 3] = w_enc_fill
        tensors["W_enc"][5, 1] = w_enc_fill
    return tensors


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_weights_are_refused(tmp_path: Path, bad: float):
    folder = _saelens(tmp_path / "s", _weights(bad))
    with pytest.raises(FeaturelensError) as caught:
        SAELensFormat().load(str(folder))
    assert "W_enc in" in _one_sentence(caught) and "holds 2 NaN or infinite values" in str(caught.value)


def test_non_finite_gemma_scope_and_native(tmp_path: Path):
    folder = _native(tmp_path / "n")
    from safetensors.torch import load_file

    state = load_file(str(folder / "weights.safetensors"))
    state["b_enc"][0] = float("nan")
    save_file(state, str(folder / "weights.safetensors"))
    with pytest.raises(FeaturelensError, match="b_enc in .* holds 1 NaN or infinite values"):
        NativeFormat().load(str(folder))


def test_safetensors_header_larger_than_its_data(tmp_path: Path):
    folder = _saelens(tmp_path / "s", _weights())
    path = folder / "sae_weights.safetensors"
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + length])
    header["W_enc"]["shape"] = [D_IN, 30_000_000]
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + length:])
    with pytest.raises(FeaturelensError) as caught:
        SAELensFormat().load(str(folder))
    assert "claims W_enc [8, 30000000]" in _one_sentence(caught)


def test_safetensors_integer_weights_are_refused(tmp_path: Path):
    tensors = _weights()
    tensors["b_enc"] = torch.zeros(D_SAE, dtype=torch.int64)
    folder = _saelens(tmp_path / "s", tensors)
    with pytest.raises(FeaturelensError, match="b_enc in .* has dtype 'I64'"):
        SAELensFormat().load(str(folder))


def test_sparsify_width_from_header(tmp_path: Path):
    folder = tmp_path / "sp" / "layers.1"
    folder.mkdir(parents=True)
    (folder / "cfg.json").write_text(json.dumps({"activation": "topk", "num_latents": 30_000_000, "k": 4}))
    save_file({"encoder.weight": torch.zeros(D_SAE, D_IN), "encoder.bias": torch.zeros(D_SAE),
               "W_dec": torch.zeros(D_SAE, D_IN), "b_dec": torch.zeros(D_IN)}, str(folder / "sae.safetensors"))
    with pytest.raises(FeaturelensError, match="implies 30000000 latents, but encoder.weight has 24"):
        SparsifyFormat().load(str(folder))


@pytest.mark.parametrize("k", [None, "32", 2.5, -1])
def test_dictionary_learning_topk_needs_an_integer_k(tmp_path: Path, k):
    g = torch.Generator().manual_seed(0)
    state = {"encoder.weight": torch.randn(D_SAE, D_IN, generator=g), "encoder.bias": torch.zeros(D_SAE),
             "decoder.weight": torch.randn(D_IN, D_SAE, generator=g), "b_dec": torch.zeros(D_IN)}
    tmp_path.joinpath("ae").mkdir()
    torch.save(state, tmp_path / "ae" / "ae.pt")
    trainer = {"dict_class": "AutoEncoderTopK", "activation_dim": D_IN, "dict_size": D_SAE}
    if k is not None:
        trainer["k"] = k
    (tmp_path / "ae" / "config.json").write_text(json.dumps({"trainer": trainer}))
    with pytest.raises(FeaturelensError) as caught:
        DictionaryLearningFormat().load(str(tmp_path / "ae"))
    assert "without a positive integer k" in _one_sentence(caught)


PROBE = """
import json, resource, sys, time
from featurelens.core.errors import FeaturelensError
from featurelens.plugins.formats.native import NativeFormat
from featurelens.core.host.manager import get_registry
get_registry()  # plugin discovery and imports are not the loader's cost
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
try:
    NativeFormat().load(sys.argv[1])
except FeaturelensError as error:
    message = str(error)
print(json.dumps({"seconds": time.perf_counter() - started, "message": message,
                  "grew_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024}))
"""


def test_huge_claimed_width_allocates_nothing(tmp_path: Path):
    """The 30M-latent config over 1 KB of weights: today 3.2 GB and 20 s; now refused at once."""
    folder = _native(tmp_path / "d")
    _edit_manifest(folder, d_sae=30_000_000)
    out = subprocess.run([sys.executable, "-c", PROBE, str(folder)], capture_output=True, text=True,
                         timeout=120, check=True)
    result = json.loads(out.stdout)
    assert "d_sae=30000000, which needs at least 240000000 weights, but its weights hold 416" in result["message"]
    assert result["seconds"] < 2 and result["grew_mb"] < 100, result


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_check_finite_counts_every_chunk(dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch):
    """Bad values in any chunk, of any float width, are found and counted exactly."""
    from featurelens.plugins.formats import headers

    monkeypatch.setattr(headers, "FINITE_CHUNK", 1000)
    weights = torch.randn(3, 1500).to(dtype)
    headers.check_finite(weights, "W_dec", "here")  # finite: passes
    weights[0, 999] = float("nan")
    weights[2, 1499] = float("inf")
    weights[2, 0] = float("-inf")
    with pytest.raises(FeaturelensError, match="W_dec in here holds 3 NaN or infinite values"):
        headers.check_finite(weights, "W_dec", "here")
