"""SAELens's single-file .pt families (deepseek_r1, goodfire, qwen_scope): written here with
torch.save in each family's layout, loaded by their saelens: names from a Hugging Face
cache folder, and encoded/decoded as SAELens's loaders define them; hostile files are
refused in one sentence before any storage is read."""

from __future__ import annotations

import os
import sys
import types
import zipfile
from pathlib import Path

import pytest
import torch

from featurelens.core.dictionaries.loading import load_dictionary
from featurelens.core.errors import FeaturelensError

COMMIT = "0123456789abcdef0123456789abcdef01234567"
D_IN, D_SAE, K = 12, 40, 5

#: family -> (release, sae id, repo, file, layer) as SAELens's pretrained_saes.yaml lists them
#: (Qwen Scope's k is the repository's L0_<k>).
FAMILIES = {
    "deepseek_r1": ("deepseek-r1-distill-llama-8b-qresearch", "blocks.19.hook_resid_post",
                    "qresearch/DeepSeek-R1-Distill-Llama-8B-SAE-l19", "DeepSeek-R1-Distill-Llama-8B-SAE-l19.pt", 19),
    "goodfire": ("goodfire-llama-3.1-8b-instruct", "layer_19", "Goodfire/Llama-3.1-8B-Instruct-SAE-l19",
                 "Llama-3.1-8B-Instruct-SAE-l19.pth", 19),
    "qwen_scope": ("qwen-scope-3-1.7b-base-w32k-l5", "layer3", f"Qwen/SAE-Res-Qwen3-1.7B-Base-W32K-L0_{K}",
                   "layer3.sae.pt", 3),
}


class Width:
    """The model side load_dictionary asks: every hookpoint is D_IN wide."""

    model_id = "stand-in"

    def hookpoint_width(self, hookpoint: str) -> int:
        return D_IN


def _weights(family: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights in the family's own names and orientations (encoder [d_sae, d_in],
    decoder [d_in, d_sae]), as its checkpoint holds them."""
    g = torch.Generator().manual_seed(seed)
    enc, dec = torch.randn(D_SAE, D_IN, generator=g) / D_IN ** 0.5, torch.randn(D_IN, D_SAE, generator=g)
    b_enc, b_dec = torch.randn(D_SAE, generator=g) * 0.1, torch.randn(D_IN, generator=g) * 0.5
    if family == "qwen_scope":
        return {"W_enc": enc, "b_enc": b_enc, "W_dec": dec, "b_dec": b_dec}
    prefix = {"deepseek_r1": "", "goodfire": "_linear"}[family]
    return {f"encoder{prefix}.weight": enc, f"encoder{prefix}.bias": b_enc,
            f"decoder{prefix}.weight": dec, f"decoder{prefix}.bias": b_dec}


def _parts(family: str, w: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    names = {"qwen_scope": ("W_enc", "b_enc", "W_dec", "b_dec"),
             "deepseek_r1": ("encoder.weight", "encoder.bias", "decoder.weight", "decoder.bias"),
             "goodfire": ("encoder_linear.weight", "encoder_linear.bias", "decoder_linear.weight",
                          "decoder_linear.bias")}[family]
    return tuple(w[n] for n in names)


def _reference_encode(family: str, w: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """SAELens's definition: W_enc = encoder.T, no b_dec subtracted; ReLU (deepseek_r1,
    goodfire: its standard SAE) or top-k of the pre-activations then ReLU (qwen_scope)."""
    enc, b_enc, _, _ = _parts(family, w)
    pre = x @ enc.T + b_enc
    if family != "qwen_scope":
        return torch.relu(pre)
    top = pre.topk(K, dim=-1, sorted=False)
    return torch.zeros_like(pre).scatter(-1, top.indices, top.values.relu())


def _cache_file(cache: Path, repo: str, name: str) -> Path:
    base = cache / f"models--{repo.replace('/', '--')}"
    (base / "refs").mkdir(parents=True, exist_ok=True)
    (base / "refs" / "main").write_text(COMMIT)
    (base / "snapshots" / COMMIT).mkdir(parents=True, exist_ok=True)
    return base / "snapshots" / COMMIT / name


def _sae_lens_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """sae_lens's table lookup, stood in by a module of the same shape holding the real entries."""
    table = {release: types.SimpleNamespace(repo_id=repo, conversion_func=family, config_overrides=None,
                                            saes_map={sae_id: name})
             for family, (release, sae_id, repo, name, _) in FAMILIES.items()}
    module = types.ModuleType("sae_lens.loading.pretrained_saes_directory")
    module.get_pretrained_saes_directory = lambda: table
    for name in ("sae_lens", "sae_lens.loading"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "sae_lens.loading.pretrained_saes_directory", module)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_each_family_loads_by_name_and_encodes_as_saelens(family: str, hf_cache: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    release, sae_id, repo, name, layer = FAMILIES[family]
    _sae_lens_table(monkeypatch)
    w = _weights(family)
    # entries beside the four tensors (a training config, a step) are ignored, as SAELens ignores them
    torch.save({**w, "cfg": {"k": K, "lr": 1e-4, "hook": "resid_post"}, "step": torch.tensor(1000)},
               _cache_file(hf_cache, repo, name))
    hookpoint = f"blocks.{layer}.hook_resid_post"
    sae = load_dictionary(f"saelens:{release}/{sae_id}", backend=Width(), hookpoint=hookpoint, dtype="float32")
    enc, b_enc, dec, b_dec = _parts(family, w)
    assert sae.format == "pt_file" and sae.architecture == ("topk" if family == "qwen_scope" else "relu")
    assert sae.hookpoint == hookpoint and (sae.d_in, sae.d_sae) == (D_IN, D_SAE)
    x = torch.randn(30, D_IN, generator=torch.Generator().manual_seed(1)) * 2
    want = _reference_encode(family, w, x)
    got = sae.encode(x)
    assert int((want != 0).sum()) > 0 and torch.equal(got != 0, want != 0)
    assert torch.allclose(got, want, atol=1e-5)
    if family == "qwen_scope":
        assert int((got != 0).sum(dim=-1).max()) <= K
    assert torch.allclose(sae.decode(want), want @ dec.T + b_dec, atol=1e-5)
    default = load_dictionary(f"saelens:{release}/{sae_id}", backend=Width(), hookpoint=hookpoint)
    # SAELens's from_pretrained builds every family in float32 unless asked otherwise
    assert default.W_enc.dtype == torch.float32 and torch.equal(default.W_enc, enc.T)
    half = {k: v.to(torch.bfloat16) for k, v in w.items()}
    torch.save(half, _cache_file(hf_cache, repo, name))
    assert torch.equal(load_dictionary(f"saelens:{release}/{sae_id}", backend=Width(), hookpoint=hookpoint).W_enc,
                       half[next(iter(w))].T.float())


def test_qwen_scope_k_comes_from_saelens_table_entry(hf_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """resolve() passes the repository's L0_<k> to the format's load as k; a table's own
    config_overrides k is still refused as an override featurelens does not reproduce."""
    from featurelens.core.dictionaries.pretrained import load_options, resolve

    release, sae_id, repo, name, _ = FAMILIES["qwen_scope"]
    _sae_lens_table(monkeypatch)
    torch.save(_weights("qwen_scope"), _cache_file(hf_cache, repo, name))
    _, provenance = resolve(f"saelens:{release}/{sae_id}")
    assert load_options(provenance) == {"k": K}
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    get_pretrained_saes_directory()[release].config_overrides = {"k": 7}
    with pytest.raises(FeaturelensError, match="SAELens overrides k=7 for this release"):
        resolve(f"saelens:{release}/{sae_id}")


def test_a_qwen_scope_file_takes_k_from_its_cache_folder_or_asks_for_it(hf_cache: Path, tmp_path: Path) -> None:
    _, _, repo, name, _ = FAMILIES["qwen_scope"]
    w = _weights("qwen_scope", seed=2)
    cached = _cache_file(hf_cache, repo, name)
    torch.save(w, cached)
    sae = load_dictionary(str(cached), backend=Width(), hookpoint="blocks.3.hook_resid_post")
    assert sae.k == K
    loose = tmp_path / "layer3.sae.pt"
    torch.save(w, loose)
    with pytest.raises(FeaturelensError) as caught:
        load_dictionary(str(loose), backend=Width(), hookpoint="blocks.3.hook_resid_post")
    assert "k is in its repository's name" in str(caught.value) and "\n" not in str(caught.value)
    assert load_dictionary(str(loose), backend=Width(), hookpoint="blocks.3.hook_resid_post", k=3).k == 3


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _rewrite(source: Path, target: Path, member_suffix: str, edit) -> None:
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as new:
        for info in old.infolist():
            data = old.read(info.filename)
            new.writestr(info.filename, edit(data) if info.filename.endswith(member_suffix) else data)


@pytest.fixture
def storages_read(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The storage members (``<archive>/data/<key>``) any zip read opens: none may be
    opened for a file that is refused."""
    opened: list[str] = []
    real = zipfile.ZipFile.open

    def spy(self, name, *args, **kwargs):
        member = name.filename if isinstance(name, zipfile.ZipInfo) else name
        if "/data/" in member:
            opened.append(member)
        return real(self, name, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    return opened


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_hostile_files_are_one_sentence_before_any_storage_is_read(family: str, tmp_path: Path,
                                                                   storages_read: list[str]) -> None:
    _, _, _, name, _ = FAMILIES[family]
    options = {"k": K} if family == "qwen_scope" else {}
    marker = tmp_path / "PWNED"
    code = tmp_path / "code" / name
    code.parent.mkdir()
    torch.save({**_weights(family), "config": _Payload(marker)}, code)
    short = tmp_path / "short" / name
    short.parent.mkdir()
    good = tmp_path / name
    torch.save(_weights(family), good)
    _rewrite(good, short, "/data/0", lambda b: b[:-4])
    wide = tmp_path / "wide" / name
    wide.parent.mkdir()
    w = _weights(family)
    bias = _parts(family, w)[3]
    torch.save({k: torch.zeros(D_IN + 1) if v is bias else v for k, v in w.items()}, wide)
    storages_read.clear()
    cases = [(code, r"contains objects other than tensors \(it names posix\.system\)"),
             (short, r"is not a readable PyTorch file \(its storage 0 has \d+ bytes, not the \d+ it declares\)"),
             (wide, rf"has shape \[{D_IN + 1}\], but .* implies \[{D_IN}\]")]
    for path, message in cases:
        with pytest.raises(FeaturelensError, match=message) as caught:
            load_dictionary(str(path), backend=Width(), hookpoint="blocks.0.hook_resid_post", **options)
        assert "\n" not in str(caught.value) and "Traceback" not in str(caught.value)
    assert storages_read == [] and not marker.exists()


def test_a_state_dict_of_another_layout_names_what_it_holds(tmp_path: Path, storages_read: list[str]) -> None:
    path = tmp_path / "model.pt"
    torch.save({"lm_head.weight": torch.zeros(3, 2)}, path)
    storages_read.clear()
    with pytest.raises(FeaturelensError, match=r"holding lm_head\.weight, which is none of the SAE layouts"):
        load_dictionary(str(path), backend=Width(), hookpoint="blocks.0.hook_resid_post")
    assert storages_read == []


def test_connor_rob_hook_z_stays_refused_before_download(hf_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """hook_z (per-head attention values, LayerNorm and value biases folded out by
    TransformerLens) has no featurelens hookpoint, so the family is refused by name."""
    table = {"gpt2-small-hook-z-kk": types.SimpleNamespace(
        repo_id="ckkissane/attn-saes-gpt2-small-all-layers", conversion_func="connor_rob_hook_z",
        config_overrides=None, saes_map={"blocks.0.hook_z": "gpt2-small_L0_Hcat_z.pt"})}
    module = types.ModuleType("sae_lens.loading.pretrained_saes_directory")
    module.get_pretrained_saes_directory = lambda: table
    for mod in ("sae_lens", "sae_lens.loading"):
        monkeypatch.setitem(sys.modules, mod, types.ModuleType(mod))
    monkeypatch.setitem(sys.modules, "sae_lens.loading.pretrained_saes_directory", module)
    with pytest.raises(FeaturelensError) as caught:
        load_dictionary("saelens:gpt2-small-hook-z-kk/blocks.0.hook_z", backend=Width(),
                        hookpoint="blocks.0.hook_attn_out")
    text = str(caught.value)
    assert "'connor_rob_hook_z'" in text and "hook_z" in text and "featurelens does not read" in text
    assert "\n" not in text and not any(hf_cache.iterdir())
