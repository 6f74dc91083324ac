"""Every SAELens pretrained family featurelens reads loads by name and encodes exactly as
SAELens's own load of the same Hugging Face cache folder (slow: the real sae_lens, run
apart by tests/saelens_families.py); the others are refused in one sentence."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = Path(os.environ.get("FEATURELENS_REFERENCE_LIBS", ROOT / ".reference-libs"))


@pytest.mark.slow
def test_each_family_encodes_like_saelens(tmp_path: Path) -> None:
    if not (REFERENCE / "sae_lens").is_dir():
        pytest.skip(f"sae_lens is not installed in {REFERENCE}; run scripts/reference_libs.sh")
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{REFERENCE}", "HF_HUB_CACHE": str(tmp_path / "hub"),
           "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, str(ROOT / "tests" / "saelens_families.py")], env=env,
                         capture_output=True, text=True, timeout=1200)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    loaded = [r for r in rows if "max_diff" in r]
    assert {r["family"].split(",")[0] for r in loaded} == {
        "none", "gemma_2", "gemma_2_transcoder", "dictionary_learning_1", "gemma_3", "llama_scope",
        "llama_scope_r1_distill", "mwhanna_transcoder", "mntss_clt_layer_transcoder", "deepseek_r1", "goodfire",
        "qwen_scope"}
    for r in loaded:
        assert r["same_active"] and r["active"] > 0, r
        assert r["max_diff"] <= 1e-5 * max(1.0, r["scale"]), r
    refused = [r for r in rows if "refused" in r]
    assert refused and all(r["refused"] and "featurelens does not read" in r["refused"]
                           and "\n" not in r["refused"] for r in refused)
