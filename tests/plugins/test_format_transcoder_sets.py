"""Transcoder sets on disk: circuit-tracer's per-layer and cross-layer layouts, Gemma Scope 2
per-layer files, featurelens's own set folder, and the global feature numbering."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file

from featurelens.core.errors import FeaturelensError
from featurelens.core.transcoder_layout import SetLayout
from featurelens.plugins.formats.transcoder_sets import CircuitTracerFormat, TranscoderSetFormat

D_MODEL, D_T, LAYERS = 8, 6, 3


def _ct_layer(gen: torch.Generator, *, threshold: bool = False, skip: bool = False) -> dict[str, torch.Tensor]:
    out = {"W_enc": torch.randn(D_T, D_MODEL, generator=gen), "b_enc": torch.randn(D_T, generator=gen) * 0.1,
           "W_dec": torch.randn(D_T, D_MODEL, generator=gen), "b_dec": torch.randn(D_MODEL, generator=gen)}
    if threshold:
        out["activation_function.threshold"] = torch.rand(D_T, generator=gen) * 0.5
    if skip:
        out["W_skip"] = torch.randn(D_MODEL, D_MODEL, generator=gen)
    return out


def _write_ct_set(folder: Path, layers: list[dict[str, torch.Tensor]], **config: object) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i, tensors in enumerate(layers):
        save_file(tensors, str(folder / f"layer_{i}.safetensors"))
        names.append(f"hf://someone/transcoders/layer_{i}.safetensors")
    (folder / "config.yaml").write_text(yaml.safe_dump({
        "model_kind": "transcoder_set", "feature_input_hook": "mlp.hook_in",
        "feature_output_hook": "hook_mlp_out", "transcoders": names, **config}))


def _reference_encode(t: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    pre = x @ t["W_enc"].T + t["b_enc"]
    if "activation_function.threshold" in t:
        return pre * (pre > t["activation_function.threshold"])
    return torch.relu(pre)


def test_circuit_tracer_per_layer_set_encodes_like_its_files(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(0)
    files = [_ct_layer(gen), _ct_layer(gen, threshold=True), _ct_layer(gen, skip=True)]
    _write_ct_set(tmp_path / "ct", files)
    fmt = CircuitTracerFormat()
    assert fmt.detect(str(tmp_path / "ct"))
    tset = fmt.load(str(tmp_path / "ct"))
    assert tset.layout.layers == [0, 1, 2] and tset.d_sae == 3 * D_T
    assert tset.hookpoints == [f"blocks.{l}.ln2.hook_normalized" for l in range(3)]
    x = torch.randn(5, D_MODEL, generator=gen)
    for layer, tensors in enumerate(files):
        torch.testing.assert_close(tset.transcoder(layer).encode(x), _reference_encode(tensors, x))
    expected_out = _reference_encode(files[2], x) @ files[2]["W_dec"] + files[2]["b_dec"] + x @ files[2]["W_skip"].T
    torch.testing.assert_close(tset.transcoder(2)(x), expected_out)
    # global numbering: layer 1's feature 4 is feature 6 + 4
    codes = tset.encode_sparse_layers({h: x for h in tset.hookpoints})
    dense = codes.to_dense(tset.d_sae)
    torch.testing.assert_close(dense[:, D_T:2 * D_T], _reference_encode(files[1], x))
    assert tset.layout.to_local(D_T + 4) == (1, 4) == tset.locate(D_T + 4)
    assert tset.layers == [0, 1, 2] and tset.offsets == [0, D_T, 2 * D_T] and tset.d_model == D_MODEL
    assert [r["feature_offset"] for r in tset.layer_rows("s")] == tset.offsets


def test_gemma_scope_2_files_are_read_by_their_names(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(1)
    ct = _ct_layer(gen, threshold=True, skip=True)
    gs2 = {"w_enc": ct["W_enc"].T.contiguous(), "w_dec": ct["W_dec"], "b_enc": ct["b_enc"], "b_dec": ct["b_dec"],
           "threshold": ct["activation_function.threshold"], "affine_skip_connection": ct["W_skip"].T.contiguous()}
    _write_ct_set(tmp_path / "gs2", [gs2])
    tset = CircuitTracerFormat().load(str(tmp_path / "gs2"))
    x = torch.randn(4, D_MODEL, generator=gen)
    torch.testing.assert_close(tset.transcoder(0).encode(x), _reference_encode(ct, x))
    torch.testing.assert_close(tset.transcoder(0).W_skip, ct["W_skip"])


def test_cross_layer_transcoder_folder(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(2)
    folder = tmp_path / "clt"
    folder.mkdir()
    decs = []
    for layer in range(LAYERS):
        save_file({f"W_enc_{layer}": torch.randn(D_T, D_MODEL, generator=gen),
                   f"b_enc_{layer}": torch.zeros(D_T), f"b_dec_{layer}": torch.randn(D_MODEL, generator=gen)},
                  str(folder / f"W_enc_{layer}.safetensors"))
        dec = torch.randn(D_T, LAYERS - layer, D_MODEL, generator=gen)
        decs.append(dec)
        save_file({f"W_dec_{layer}": dec}, str(folder / f"W_dec_{layer}.safetensors"))
    tset = CircuitTracerFormat().load(str(folder))
    assert tset.layout.kind == "cross_layer" and tset.layout.layers == [0, 1, 2]
    torch.testing.assert_close(tset.decoder_to(0, 0), decs[0][:, 0])
    torch.testing.assert_close(tset.decoder_to(0, 2), decs[0][:, 2])
    torch.testing.assert_close(tset.decoder_to(1, 2), decs[1][:, 1])
    assert not tset.decoder_to(2, 1).any()
    codes = {l: torch.rand(2, D_T, generator=gen) for l in range(3)}
    expected = sum(codes[s] @ decs[s][:, 2 - s] for s in range(3)) + tset.transcoder(2).b_dec
    torch.testing.assert_close(tset.reconstruct(2, codes), expected)
    TranscoderSetFormat().save(tset, str(tmp_path / "own"))
    again = TranscoderSetFormat().load(str(tmp_path / "own"))
    assert again.layout.kind == "cross_layer"
    torch.testing.assert_close(again.reconstruct(2, codes), expected)
    with pytest.raises(FeaturelensError, match="per-layer transcoder sets only"):
        CircuitTracerFormat().save(tset, str(tmp_path / "ct-out"))


def test_own_set_folder_round_trips_and_names_layers(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(3)
    _write_ct_set(tmp_path / "ct", [_ct_layer(gen), _ct_layer(gen, threshold=True)])
    tset = CircuitTracerFormat().load(str(tmp_path / "ct"))
    TranscoderSetFormat().save(tset, str(tmp_path / "own"))
    again = TranscoderSetFormat().load(str(tmp_path / "own"))
    assert again.layout == tset.layout
    for a, b in zip(tset.state_dict().values(), again.state_dict().values()):
        torch.testing.assert_close(a, b)
    # and back out to circuit-tracer's layout, read again identically
    CircuitTracerFormat().save(again, str(tmp_path / "ct2"))
    third = CircuitTracerFormat().load(str(tmp_path / "ct2"))
    x = torch.randn(3, D_MODEL, generator=gen)
    for layer in (0, 1):
        torch.testing.assert_close(third.transcoder(layer)(x), tset.transcoder(layer)(x))


def test_layout_in_config_reads_back(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(4)
    _write_ct_set(tmp_path / "ct", [_ct_layer(gen), _ct_layer(gen)])
    tset = CircuitTracerFormat().load(str(tmp_path / "ct"))
    layout = SetLayout.from_config(json.dumps(tset.config, default=str))
    assert layout == tset.layout and layout.to_global(1, 0) == D_T


def test_shapes_are_checked_before_data(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(5)
    bad = _ct_layer(gen)
    bad["W_dec"] = torch.randn(D_T + 1, D_MODEL)
    _write_ct_set(tmp_path / "bad", [bad])
    with pytest.raises(FeaturelensError, match="W_dec .* has shape \\[7, 8\\]"):
        CircuitTracerFormat().load(str(tmp_path / "bad"))


def test_files_outside_the_folder_are_refused(tmp_path: Path) -> None:
    (tmp_path / "ct").mkdir()
    (tmp_path / "ct" / "config.yaml").write_text(yaml.safe_dump(
        {"model_kind": "transcoder_set", "transcoders": ["../../etc/passwd"]}))
    with pytest.raises(FeaturelensError, match="outside its folder"):
        CircuitTracerFormat().load(str(tmp_path / "ct"))


def test_a_layout_with_a_gap_is_refused() -> None:
    config = {"transcoder_set": {"kind": "per_layer"}, "layers": [{"layer": 0, "feature_offset": 0, "d_sae": 4},
                                                                  {"layer": 1, "feature_offset": 5, "d_sae": 4}]}
    with pytest.raises(FeaturelensError, match="layout is inconsistent"):
        SetLayout.from_config(config)


COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _cache_repo(cache: Path, repo: str) -> Path:
    """An empty repository snapshot in huggingface_hub's cache layout."""
    base = cache / f"models--{repo.replace('/', '--')}"
    (base / "refs").mkdir(parents=True)
    (base / "refs" / "main").write_text(COMMIT)
    snapshot = base / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    return snapshot


def test_a_circuit_tracer_repo_loads_by_hf_name(hf_cache: Path) -> None:
    from featurelens.core.dictionaries.loading import load_dictionary

    gen = torch.Generator().manual_seed(6)
    snapshot = _cache_repo(hf_cache, "someone/tiny-transcoders")
    _write_ct_set(snapshot, [_ct_layer(gen), _ct_layer(gen)])

    class Backend:  # the widths load_dictionary checks every layer against
        model_id = "tiny"

        def hookpoint_width(self, name: str) -> int:
            return D_MODEL

    tset = load_dictionary("hf:someone/tiny-transcoders", backend=Backend(), hookpoint=None)
    assert tset.layers == [0, 1] and tset.config["hf_repo"] == "someone/tiny-transcoders"


def test_make_set_from_saelens_names(cli, hf_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SAELens transcoders named saelens:<release>/<sae_id> (its table stood in by a module of
    the same shape), gathered into one set that loads and encodes like its parts."""
    import sys
    import types

    from featurelens.plugins.dictionaries.transcoder import make_transcoder
    from featurelens.plugins.formats.saelens import SAELensFormat

    snapshot = _cache_repo(hf_cache, "someone/tiny-transcoders")
    parts = {}
    for layer in (0, 1):
        torch.manual_seed(layer)
        t = make_transcoder(D_MODEL, D_T, activation="relu" if layer else "jumprelu", skip=layer == 1,
                            hookpoint_out=f"blocks.{layer}.hook_mlp_out")
        t.hookpoint = f"blocks.{layer}.ln2.hook_normalized"
        SAELensFormat().save(t, str(snapshot / f"layer_{layer}"))
        parts[layer] = t
    entry = types.SimpleNamespace(repo_id="someone/tiny-transcoders",
                                  saes_map={f"layer_{l}": f"layer_{l}" for l in (0, 1)})
    module = types.ModuleType("sae_lens.loading.pretrained_saes_directory")
    module.get_pretrained_saes_directory = lambda: {"tiny-tc": entry}
    for name in ("sae_lens", "sae_lens.loading"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "sae_lens.loading.pretrained_saes_directory", module)
    out = tmp_path / "set"
    result = cli("dictionaries", "make-set", out, "--layer", "0=saelens:tiny-tc/layer_0",
                 "--layer", "1=saelens:tiny-tc/layer_1", "--name", "tiny-tc-set")
    assert result.exit_code == 0, result.output
    assert f"layers 0, 1 ({2 * D_T} features)" in result.output
    tset = TranscoderSetFormat().load(str(out))
    assert tset.dictionary_id == "tiny-tc-set" and tset.layout.skip
    x = torch.randn(5, D_MODEL)
    for layer, part in parts.items():
        torch.testing.assert_close(tset.transcoder(layer)(x), part(x))
    sae = cli("dictionaries", "make-set", tmp_path / "bad", "--layer", "0=nothing-here")
    assert sae.exit_code != 0 and "does not exist" in sae.output


def test_a_config_naming_another_repositorys_files(hf_cache: Path) -> None:
    """circuit-tracer's Gemma Scope 2 configs live in one repository and name each layer's
    params.safetensors in Google's: both come from the Hugging Face cache."""
    from featurelens.core.dictionaries.loading import load_dictionary
    from safetensors.torch import save_file as save

    gen = torch.Generator().manual_seed(7)
    weights = _cache_repo(hf_cache, "google/tiny-scope-2")
    originals = []
    for layer in range(2):
        ct = _ct_layer(gen, threshold=True)
        originals.append(ct)
        (weights / f"transcoder/layer_{layer}").mkdir(parents=True)
        save({"w_enc": ct["W_enc"].T.contiguous(), "w_dec": ct["W_dec"], "b_enc": ct["b_enc"], "b_dec": ct["b_dec"],
              "threshold": ct["activation_function.threshold"]}, str(weights / f"transcoder/layer_{layer}/params.safetensors"))
    configs = _cache_repo(hf_cache, "someone/scope-2-for-ct")
    (configs / "width_tiny").mkdir()
    (configs / "width_tiny" / "config.yaml").write_text(yaml.safe_dump({
        "model_kind": "transcoder_set", "feature_input_hook": "mlp.hook_in", "feature_output_hook": "hook_mlp_out",
        "transcoders": [f"hf://google/tiny-scope-2/transcoder/layer_{l}/params.safetensors" for l in range(2)]}))

    class Backend:
        model_id = "tiny"

        def hookpoint_width(self, name: str) -> int:
            return D_MODEL

    tset = load_dictionary("hf:someone/scope-2-for-ct/width_tiny", backend=Backend(), hookpoint=None)
    x = torch.randn(4, D_MODEL, generator=gen)
    for layer, ct in enumerate(originals):
        torch.testing.assert_close(tset.transcoder(layer).encode(x), _reference_encode(ct, x))
    (configs / "width_tiny" / "config.yaml").write_text(yaml.safe_dump({
        "model_kind": "transcoder_set", "transcoders": ["hf://google/not-cached/layer_0.safetensors"]}))
    with pytest.raises(FeaturelensError, match="not in the Hugging Face cache .* HF_HUB_OFFLINE is set"):
        load_dictionary("hf:someone/scope-2-for-ct/width_tiny", backend=Backend(), hookpoint=None)


def test_layer_files_without_a_list(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(8)
    _write_ct_set(tmp_path / "ct", [_ct_layer(gen), _ct_layer(gen), _ct_layer(gen)])
    config = yaml.safe_load((tmp_path / "ct" / "config.yaml").read_text())
    del config["transcoders"]
    (tmp_path / "ct" / "config.yaml").write_text(yaml.safe_dump(config))
    assert CircuitTracerFormat().load(str(tmp_path / "ct")).layers == [0, 1, 2]


def test_make_set_from_gemma_scope_2_folders(cli, tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(9)
    originals = []
    for layer in range(2):
        ct = _ct_layer(gen, threshold=True, skip=True)
        originals.append(ct)
        folder = tmp_path / "gs2" / f"layer_{layer}_width_tiny"
        folder.mkdir(parents=True)
        save_file({"w_enc": ct["W_enc"].T.contiguous(), "w_dec": ct["W_dec"], "b_enc": ct["b_enc"],
                   "b_dec": ct["b_dec"], "threshold": ct["activation_function.threshold"],
                   "affine_skip_connection": ct["W_skip"].T.contiguous()}, str(folder / "params.safetensors"))
    result = cli("dictionaries", "make-set", tmp_path / "set", *[
        a for layer in range(2) for a in ("--layer", f"{layer}={tmp_path / 'gs2' / f'layer_{layer}_width_tiny'}")])
    assert result.exit_code == 0, result.output
    tset = TranscoderSetFormat().load(str(tmp_path / "set"))
    x = torch.randn(3, D_MODEL, generator=gen)
    for layer, ct in enumerate(originals):
        expected = _reference_encode(ct, x) @ ct["W_dec"] + ct["b_dec"] + x @ ct["W_skip"].T
        torch.testing.assert_close(tset.transcoder(layer)(x), expected)
