"""Readers encode exactly as the library that wrote the checkpoint: sparsify in bf16
(F.linear, bias inside the matmul), and checkpoints saved by the real sparsify and
sae_lens packages (slow: runs them in their own environment, see reference_writers.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from featurelens.core.errors import FeaturelensError
from featurelens.plugins.formats.saelens import SAELensFormat
from featurelens.plugins.formats.sparsify import SparsifyFormat

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = Path(os.environ.get("FEATURELENS_REFERENCE_LIBS", ROOT / ".reference-libs"))


def _sparsify_codes(weight, bias, b_dec, x, k):
    """sparsify's fused_encoder: topk(relu(F.linear(x - b_dec, W, b)))."""
    pre = torch.relu(F.linear(x.to(weight.dtype) - b_dec, weight, bias))
    return pre.topk(k, sorted=False)


def _write_sparsify(folder: Path, weight, bias, w_dec, b_dec, k: int) -> None:
    import json

    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    save_file({"encoder.weight": weight, "encoder.bias": bias, "W_dec": w_dec, "b_dec": b_dec},
              str(folder / "sae.safetensors"))
    (folder / "cfg.json").write_text(json.dumps({"activation": "topk", "expansion_factor": 8, "num_latents": weight.shape[0],
                                                 "k": k, "transcode": False, "skip_connection": False,
                                                 "d_in": weight.shape[1], "normalize_decoder": True}))


def test_bf16_sparsify_codes_are_bit_identical(tmp_path: Path) -> None:
    """At real width the matmul-then-add of a bf16 SAE differs from F.linear; we use F.linear."""
    g = torch.Generator().manual_seed(0)
    d_in, n, k = 576, 4608, 32
    weight = (torch.randn(n, d_in, generator=g) / d_in ** 0.5).to(torch.bfloat16)
    bias = (torch.randn(n, generator=g) * 0.5).to(torch.bfloat16)
    b_dec = torch.randn(d_in, generator=g).to(torch.bfloat16)
    _write_sparsify(tmp_path / "layers.6", weight, bias, weight.clone(), b_dec, k)
    sae = SparsifyFormat().load(str(tmp_path / "layers.6"))
    x = (torch.randn(512, d_in, generator=g) * 4).to(torch.bfloat16)
    want = _sparsify_codes(weight, bias, b_dec, x, k)
    dense = torch.zeros(512, n, dtype=torch.bfloat16).scatter(-1, want.indices, want.values)
    assert torch.equal(sae.encode(x), dense)
    got = sae.encode_sparse(x)
    rebuilt = torch.zeros(512, n, dtype=torch.bfloat16).scatter(-1, got.indices, got.values.to(torch.bfloat16))
    assert torch.equal(rebuilt, dense)
    # The old computation really did differ here (so this test can fail).
    unfused = (x - b_dec) @ weight.T + bias
    assert not torch.equal(unfused, F.linear(x - b_dec, weight, bias))


def test_multi_hookpoint_root_picks_the_folder_for_the_hookpoint(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(1)
    for layer in (5, 6):
        w = torch.randn(64, 8, generator=g)
        _write_sparsify(tmp_path / "run" / f"layers.{layer}", w, torch.zeros(64), w.clone(), torch.zeros(8), 4)
    fmt = SparsifyFormat()
    assert fmt.load(str(tmp_path / "run"), hookpoint="blocks.6.hook_resid_post").config["sparsify_hookpoint"] == "layers.6"
    assert fmt.load(str(tmp_path / "run"), hookpoint="layers.5").config["sparsify_hookpoint"] == "layers.5"
    with pytest.raises(FeaturelensError, match=r"none of which reads blocks\.9\.hook_resid_post; pass --hookpoint") as e:
        fmt.load(str(tmp_path / "run"), hookpoint="blocks.9.hook_resid_post")
    assert "\n" not in str(e.value)
    with pytest.raises(FeaturelensError, match="pass --hookpoint to pick one"):
        fmt.load(str(tmp_path / "run"))


def test_dictionaries_import_passes_the_hookpoint(cli, tmp_path: Path, tiny_model_dir: Path) -> None:
    g = torch.Generator().manual_seed(2)
    import json

    width = json.loads((tiny_model_dir / "config.json").read_text())["hidden_size"]
    for layer in (0, 1):
        w = torch.randn(4 * width, width, generator=g)
        _write_sparsify(tmp_path / "run" / f"layers.{layer}", w, torch.zeros(4 * width), w.clone(),
                        torch.zeros(width), 4)
    result = cli("dictionaries", "import", tmp_path / "run", "--model", tiny_model_dir,
                 "--hookpoint", "blocks.1.hook_resid_post", "--store", tmp_path / "s.duckdb", "--device", "cpu")
    assert result.exit_code == 0, result.output
    import featurelens

    with featurelens.open_store(tmp_path / "s.duckdb", read_only=True) as store:
        row = store.sql("SELECT hookpoint, config FROM dictionaries").row(0, named=True)
    assert row["hookpoint"] == "blocks.1.hook_resid_post" and '"sparsify_hookpoint": "layers.1"' in row["config"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (REFERENCE / "sparsify").is_dir() or not (REFERENCE / "sae_lens").is_dir():
        pytest.skip(f"sparsify and sae_lens are not installed in {REFERENCE}; run scripts/reference_libs.sh")
    out = tmp_path_factory.mktemp("reference")
    env = {**os.environ, "PYTHONPATH": str(REFERENCE)}
    subprocess.run([sys.executable, str(ROOT / "tests" / "reference_writers.py"), str(out)], env=env,
                   check=True, capture_output=True, timeout=600)
    return out


@pytest.mark.slow
def test_checkpoints_written_by_sparsify_itself(reference: Path) -> None:
    from safetensors.torch import load_file

    codes = load_file(str(reference / "codes.safetensors"))
    for layer in (5, 6):
        sae = SparsifyFormat().load(str(reference / "sparsify"), hookpoint=f"blocks.{layer}.hook_resid_post")
        assert sae.W_enc.dtype == torch.bfloat16
        got = sae.encode(codes["x"])
        want = torch.zeros_like(got).scatter(-1, codes[f"sparsify.layers.{layer}.indices"],
                                             codes[f"sparsify.layers.{layer}.values"].to(got.dtype))
        assert torch.equal(got, want), f"layers.{layer}: {(got != want).any(-1).float().mean():.0%} rows differ"


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["standard", "topk", "jumprelu"])
def test_checkpoints_written_by_saelens_itself(reference: Path, arch: str) -> None:
    from safetensors.torch import load_file

    codes = load_file(str(reference / "codes.safetensors"))
    sae = SAELensFormat().load(str(reference / f"saelens-{arch}"))
    got = sae.encode(codes["x"]).float()
    assert (got > 0).eq(codes[f"saelens.{arch}"] > 0).all()
    assert torch.allclose(got, codes[f"saelens.{arch}"], atol=2e-5, rtol=0)
