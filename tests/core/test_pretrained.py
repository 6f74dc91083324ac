"""--dictionary hf:<repo>[/<subfolder>] and saelens:<release>/<sae_id>, resolved through a
Hugging Face cache folder built here (offline: a cached checkpoint loads, a missing one
is one sentence saying what to download)."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
import torch

import featurelens
from featurelens.core.dictionaries.pretrained import resolve
from featurelens.core.errors import FeaturelensError

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _cache_repo(cache: Path, repo: str, files: dict[str, bytes]) -> Path:
    """A repository in huggingface_hub's cache layout: refs/main -> snapshots/<commit>/..."""
    base = cache / f"models--{repo.replace('/', '--')}"
    (base / "refs").mkdir(parents=True)
    (base / "refs" / "main").write_text(COMMIT)
    snapshot = base / "snapshots" / COMMIT
    for name, data in files.items():
        path = snapshot / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return snapshot


def _sparsify_files(prefix: str, width: int, seed: int) -> dict[str, bytes]:
    import io

    g = torch.Generator().manual_seed(seed)
    n = 4 * width
    w = torch.randn(n, width, generator=g)
    tensors = {"encoder.weight": w, "encoder.bias": torch.zeros(n), "W_dec": w.clone(), "b_dec": torch.zeros(width)}
    tmp = io.BytesIO()
    from safetensors.torch import save

    tmp.write(save(tensors))
    cfg = {"activation": "topk", "expansion_factor": 4, "num_latents": n, "k": 4, "transcode": False,
           "skip_connection": False, "d_in": width}
    return {f"{prefix}/sae.safetensors": tmp.getvalue(), f"{prefix}/cfg.json": json.dumps(cfg).encode()}


def test_hf_repo_with_subfolder_resolves_offline(hf_cache: Path) -> None:
    snapshot = _cache_repo(hf_cache, "EleutherAI/sae-tiny", {**_sparsify_files("layers.0", 8, 0),
                                                             **_sparsify_files("layers.1", 8, 1)})
    path, provenance = resolve("hf:EleutherAI/sae-tiny/layers.1")
    assert Path(path) == snapshot / "layers.1"
    assert provenance == {"hf_repo": "EleutherAI/sae-tiny", "hf_folder": "layers.1"}
    whole, _ = resolve("hf:EleutherAI/sae-tiny")
    assert Path(whole) == snapshot


@pytest.mark.parametrize("spec, message", [
    ("hf:EleutherAI/not-here/layers.3", "is not in the Hugging Face cache at"),
    ("hf:lonely", "does not name a repository; write hf:<org>/<repo>"),
    ("saelens:no-slash", "needs both parts: saelens:<release>/<sae_id>"),
])
def test_missing_or_malformed_names_are_one_sentence(hf_cache: Path, spec: str, message: str) -> None:
    with pytest.raises(FeaturelensError, match=message) as error:
        resolve(spec)
    assert "\n" not in str(error.value)
    if "cache" in message:
        assert "`hf download EleutherAI/not-here --include 'layers.3/*'`" in str(error.value)


def test_missing_subfolder_of_a_cached_repo(hf_cache: Path) -> None:
    _cache_repo(hf_cache, "EleutherAI/sae-tiny", _sparsify_files("layers.0", 8, 0))
    with pytest.raises(FeaturelensError, match="not in the Hugging Face cache"):
        resolve("hf:EleutherAI/sae-tiny/layers.7")


def test_partly_cached_repo_says_what_is_missing(hf_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline without HF_HUB_OFFLINE: the hub is unreachable, the cached copy lacks the folder."""
    _cache_repo(hf_cache, "EleutherAI/sae-tiny", _sparsify_files("layers.0", 8, 0))
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: refused at once
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    # huggingface_hub backs off between its retries of the refused connection (about 20 s);
    # the outcome is the same without the waits
    import huggingface_hub.utils._http as hub_http

    monkeypatch.setattr(hub_http.time, "sleep", lambda seconds: None)
    with pytest.raises(FeaturelensError) as error:
        resolve("hf:EleutherAI/sae-tiny/layers.7")
    text = str(error.value)
    assert "layers.0/cfg.json" in text and "nothing of layers.7" in text
    assert "`hf download EleutherAI/sae-tiny --include 'layers.7/*'`" in text and "\n" not in text


def _sae_lens_table(monkeypatch: pytest.MonkeyPatch, table: dict) -> None:
    module = types.ModuleType("sae_lens.loading.pretrained_saes_directory")
    module.get_pretrained_saes_directory = lambda: table
    for name in ("sae_lens", "sae_lens.loading"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "sae_lens.loading.pretrained_saes_directory", module)


def test_saelens_file_entries_and_families(hf_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A SAELens entry whose path is a file is fetched as that file (no 'x.pt/*' pattern);
    a family featurelens does not read is refused before any download."""
    _sae_lens_table(monkeypatch, {
        "files": types.SimpleNamespace(repo_id="someone/files", conversion_func=None, config_overrides=None,
                                       saes_map={"layer_0": "layer_0.safetensors"}),
        "scope": types.SimpleNamespace(repo_id="canrager/t", conversion_func="temporal", config_overrides=None,
                                       saes_map={"l0r": "L0R"}),
        "centred": types.SimpleNamespace(repo_id="someone/c", conversion_func=None,
                                         config_overrides={"dataset_path": "x", "hook_point_head_index": 3},
                                         saes_map={"a": "a"}),
    })
    with pytest.raises(FeaturelensError) as error:
        resolve("saelens:files/layer_0")
    assert "`hf download someone/files layer_0.safetensors`" in str(error.value) and "/*" not in str(error.value)
    snapshot = _cache_repo(hf_cache, "someone/files", {"layer_0.safetensors": b"x"})
    path, _ = resolve("saelens:files/layer_0")
    assert Path(path) == snapshot / "layer_0.safetensors"
    with pytest.raises(FeaturelensError, match="stores release scope as 'temporal'.*does not read"):
        resolve("saelens:scope/l0r")
    with pytest.raises(FeaturelensError, match="overrides hook_point_head_index=3"):
        resolve("saelens:centred/a")


def test_center_writing_weights_is_folded_into_the_encoder(tmp_path: Path) -> None:
    """center_writing_weights: the folded dictionary encodes x as the original encodes x - mean(x)."""
    from featurelens.core.dictionaries.pretrained import fold_input_centering, overrides_of
    from featurelens.core.host.manager import create

    assert overrides_of({"dataset_path": "d", "model_from_pretrained_kwargs": {"center_writing_weights": True}},
                        "s") == {"center_input": True}
    for architecture in ("relu", "topk"):
        sae = create("dictionary_learner", architecture, 16, 64, **({"k": 5} if architecture == "topk" else {}))
        with torch.no_grad():
            for p in sae.parameters():
                p.copy_(torch.randn_like(p))
        x = torch.randn(7, 16) * 3
        want = sae.encode(x - x.mean(dim=-1, keepdim=True))
        fold_input_centering(sae, "s")
        assert torch.allclose(sae.encode(x), want, atol=1e-4)
        got = sae.encode_sparse(x)
        dense = torch.zeros_like(want).scatter(-1, got.indices.long(), got.values.to(want.dtype))
        assert torch.allclose(dense, want, atol=1e-4)


def test_saelens_release_is_looked_up_in_its_table(hf_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With sae_lens's table (its lookup API, stood in here by a module of the same shape)."""
    snapshot = _cache_repo(hf_cache, "someone/tiny-saes", _sparsify_files("blocks.1.hook_resid_post", 8, 2))
    entry = types.SimpleNamespace(repo_id="someone/tiny-saes",
                                  saes_map={"blocks.1.hook_resid_post": "blocks.1.hook_resid_post"})
    module = types.ModuleType("sae_lens.loading.pretrained_saes_directory")
    module.get_pretrained_saes_directory = lambda: {"tiny-res": entry}
    for name in ("sae_lens", "sae_lens.loading"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "sae_lens.loading.pretrained_saes_directory", module)
    path, provenance = resolve("saelens:tiny-res/blocks.1.hook_resid_post")
    assert Path(path) == snapshot / "blocks.1.hook_resid_post"
    assert provenance["saelens_release"] == "tiny-res" and provenance["hf_repo"] == "someone/tiny-saes"
    with pytest.raises(FeaturelensError, match="has no SAE 'blocks.9'"):
        resolve("saelens:tiny-res/blocks.9")
    with pytest.raises(FeaturelensError, match="SAELens has no release 'other'"):
        resolve("saelens:other/x")


def test_saelens_without_sae_lens_says_what_to_do(hf_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sae_lens", None)
    with pytest.raises(FeaturelensError, match="sae_lens is not installed; pip install sae-lens, or name"):
        resolve("saelens:gpt2-small-res-jb/blocks.0.hook_resid_pre")


def test_import_and_extract_by_name(cli, hf_cache: Path, tmp_path: Path, tiny_model_dir: Path) -> None:
    width = json.loads((tiny_model_dir / "config.json").read_text())["hidden_size"]
    _cache_repo(hf_cache, "EleutherAI/sae-tiny", {**_sparsify_files("layers.0", width, 0),
                                                 **_sparsify_files("layers.1", width, 1)})
    store = tmp_path / "s.duckdb"
    result = cli("dictionaries", "import", "hf:EleutherAI/sae-tiny", "--model", tiny_model_dir,
                 "--hookpoint", "blocks.1.hook_resid_post", "--store", store, "--device", "cpu")
    assert result.exit_code == 0, result.output
    with featurelens.open_store(store, read_only=True) as s:
        row = s.sql("SELECT source, format, config FROM dictionaries").row(0, named=True)
    assert row["source"] == "hf:EleutherAI/sae-tiny" and row["format"] == "sparsify"
    assert json.loads(row["config"])["sparsify_hookpoint"] == "layers.1"
    missing = cli("dictionaries", "import", "hf:EleutherAI/absent/layers.1", "--model", tiny_model_dir,
                  "--store", store, "--device", "cpu")
    assert missing.exit_code == 1 and missing.output.strip().splitlines()[-1].startswith("Error: hf:EleutherAI/absent")


@pytest.mark.slow
def test_real_saelens_table_resolves_a_release(hf_cache: Path) -> None:
    """The real sae_lens (installed apart, scripts/reference_libs.sh) maps a release to its repo."""
    import os
    import subprocess

    root = Path(__file__).resolve().parents[2]
    reference = Path(os.environ.get("FEATURELENS_REFERENCE_LIBS", root / ".reference-libs"))
    if not (reference / "sae_lens").is_dir():
        pytest.skip(f"sae_lens is not installed in {reference}; run scripts/reference_libs.sh")
    snapshot = _cache_repo(hf_cache, "jbloom/GPT2-Small-SAEs-Reformatted",
                           _sparsify_files("blocks.0.hook_resid_pre", 8, 3))
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{reference}"}
    out = subprocess.run([sys.executable, "-c", "from featurelens.core.dictionaries.pretrained import resolve; "
                          "print(resolve('saelens:gpt2-small-res-jb/blocks.0.hook_resid_pre')[0])"],
                         env=env, capture_output=True, text=True, timeout=300, check=True)
    assert Path(out.stdout.strip().splitlines()[-1]) == snapshot / "blocks.0.hook_resid_pre"
