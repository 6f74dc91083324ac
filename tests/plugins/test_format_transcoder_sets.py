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
