"""Hostile dictionary files: each is refused in one sentence (a FeaturelensError, never
a TypeError or OverflowError), and nothing that would encode differently from the
library that wrote the checkpoint is loaded silently."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Callable

import pytest
import torch
from safetensors.torch import load_file, save_file

from featurelens.core.errors import FeaturelensError
from featurelens.core.host.manager import create
from featurelens.plugins.formats.dictionary_learning import DictionaryLearningFormat
from featurelens.plugins.formats.native import MANIFEST, NativeFormat, save_native
from featurelens.plugins.formats.saelens import SAELensFormat
from featurelens.plugins.formats.sparsify import SparsifyFormat

D_IN, D_SAE = 8, 24


def _topk():
    return create("dictionary_learner", "topk", D_IN, D_SAE, k=4)


def _edit(path: Path, **changes: object) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def _add_tensor(path: Path, name: str, tensor: torch.Tensor) -> None:
    tensors = load_file(path)
    tensors[name] = tensor
    save_file(tensors, path)


def saelens(folder: Path, **cfg: object) -> Path:
    SAELensFormat().save(_topk(), str(folder))
    _edit(folder / "cfg.json", **cfg)
    return folder


def sparsify(folder: Path, **cfg: object) -> Path:
    SparsifyFormat().save(_topk(), str(folder))
    _edit(next(folder.rglob("cfg.json")), **cfg)
    return folder


def native(folder: Path, **manifest: object) -> Path:
    save_native(_topk(), folder)
    _edit(folder / MANIFEST, **manifest)
    return folder


def dictionary_learning(folder: Path, state: dict, **trainer: object) -> Path:
    folder.mkdir()
    torch.save(state, folder / "ae.pt")
    (folder / "config.json").write_text(json.dumps({"trainer": {
        "dict_class": "AutoEncoder", "activation_dim": D_IN, "dict_size": D_SAE, **trainer}}))
    return folder


def _sl_extra(folder: Path) -> Path:
    saelens(folder)
    _add_tensor(folder / "sae_weights.safetensors", "W_skip", torch.ones(D_IN, D_IN))
    return folder


def _sp_extra(folder: Path) -> Path:
    sparsify(folder)
    _add_tensor(next(folder.rglob("*.safetensors")), "W_skip", torch.ones(D_IN, D_IN))
    return folder


def _native_extra(folder: Path) -> Path:
    native(folder)
    _add_tensor(next(folder.glob("*.safetensors")), "extra", torch.zeros(3))
    return folder


def _dl_weights() -> dict[str, torch.Tensor]:
    return {"encoder.weight": torch.zeros(D_SAE, D_IN), "encoder.bias": torch.zeros(D_SAE),
            "decoder.weight": torch.zeros(D_IN, D_SAE), "bias": torch.zeros(D_IN)}


CASES: dict[str, tuple[Callable[[Path], Path], object, str]] = {
    # name: (write the folder, format, words the sentence must hold)
    "saelens architecture is a list": (lambda f: saelens(f, architecture=["topk"]), SAELensFormat,
                                       "architecture=['topk'], which featurelens cannot load"),
    "saelens rescale flag is the string 'false'": (lambda f: saelens(f, rescale_acts_by_decoder_norm="false"),
                                                   SAELensFormat, "it must be true or false"),
    "saelens apply_b_dec flag is 0": (lambda f: saelens(f, apply_b_dec_to_input=0), SAELensFormat,
                                      "apply_b_dec_to_input=0; it must be true or false"),
    "saelens hook_name is a list": (lambda f: saelens(f, metadata={"hook_name": [6]}), SAELensFormat,
                                    "hook_name=[6]; it must be a string"),
    "saelens W_skip without a skip architecture": (_sl_extra, SAELensFormat, "'W_skip' that its SAELens config"),
    "sparsify W_skip without skip_connection": (_sp_extra, SparsifyFormat, "'W_skip' that its sparsify config"),
    "sparsify transcode is the string 'no'": (lambda f: sparsify(f, transcode="no"), SparsifyFormat,
                                              "transcode='no'; it must be true or false"),
    "sparsify expansion_factor infinite": (lambda f: sparsify(f, num_latents=0, expansion_factor=float("inf")),
                                           SparsifyFormat, "expansion_factor=inf; it must be a finite number"),
    "sparsify expansion_factor NaN": (lambda f: sparsify(f, num_latents=0, expansion_factor=float("nan")),
                                      SparsifyFormat, "expansion_factor=nan; it must be a finite number"),
    "native architecture is a list": (lambda f: native(f, architecture=["topk"]), NativeFormat,
                                      "architecture=['topk']; it must be a dictionary learner's name"),
    "native hookpoint is a number": (lambda f: native(f, hookpoint=6), NativeFormat,
                                     "hookpoint=6; it must be a string"),
    "native tensor the architecture lacks": (_native_extra, NativeFormat,
                                             "holds tensor 'extra', which a topk dictionary does not have"),
    "dictionary_learning values that are not tensors": (
        lambda f: dictionary_learning(f, {**_dl_weights(), "encoder.bias": "hello"}), DictionaryLearningFormat,
        "'encoder.bias' to values that are not tensors"),
    "dictionary_learning negative sizes": (
        lambda f: dictionary_learning(f, _dl_weights(), activation_dim=-8, dict_size=-24),
        DictionaryLearningFormat, "positive integer trainer.activation_dim and trainer.dict_size, found -8 and -24"),
    "dictionary_learning sizes given as booleans": (
        lambda f: dictionary_learning(f, _dl_weights(), activation_dim=True), DictionaryLearningFormat,
        "found True and 24"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_checkpoint_is_one_sentence(tmp_path: Path, name: str) -> None:
    write, fmt, needle = CASES[name]
    folder = write(tmp_path / "d")
    assert fmt().detect(str(folder))
    with pytest.raises(FeaturelensError) as caught:
        fmt().load(str(folder))
    message = str(caught.value)
    assert needle in message and "\n" not in message, message


class _Boom:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_a_pickle_that_runs_code_is_refused_without_torchs_advice(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """torch's message opens with advice to retry with weights_only=False; ours names what it refused."""
    monkeypatch.chdir(tmp_path)
    folder = dictionary_learning(tmp_path / "d", {"encoder.weight": _Boom()})
    with pytest.raises(FeaturelensError) as caught:
        DictionaryLearningFormat().load(str(folder))
    message = str(caught.value)
    assert "posix.system" in message and "weights_only" not in message and "\n" not in message
    assert not (tmp_path / "PWNED").exists()


def test_a_corrupt_ae_pt_is_one_short_sentence(tmp_path: Path) -> None:
    folder = dictionary_learning(tmp_path / "d", {})
    (folder / "ae.pt").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(FeaturelensError) as caught:
        DictionaryLearningFormat().load(str(folder))
    assert str(caught.value).endswith("re-download it.") and "miniz" not in str(caught.value)


@pytest.mark.parametrize("suffix", [".pt", ".pkl", ".pth", ".ckpt"])
def test_pickle_files_are_refused_by_name(cli, tmp_path: Path, tiny_model_dir: Path, suffix: str) -> None:
    target = tmp_path / f"sae{suffix}"
    target.write_bytes(pickle.dumps({"W_enc": [[0.0] * D_SAE] * D_IN}))
    store = tmp_path / "s.duckdb"
    result = cli("dictionaries", "import", target, "--model", tiny_model_dir, "--hookpoint",
                 "blocks.0.hook_resid_post", "--store", store)
    assert result.exit_code == 1
    assert "featurelens never unpickles a checkpoint" in result.output
    assert "Traceback" not in result.output


def test_a_corrupt_compressed_params_npz_is_one_sentence(tmp_path: Path) -> None:
    """A damaged deflate stream raises zlib.error, which is neither BadZipFile nor OSError."""
    import numpy as np

    from featurelens.plugins.formats.gemma_scope import GemmaScopeFormat

    folder = tmp_path / "gs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    np.savez_compressed(folder / "params.npz", W_enc=rng.standard_normal((D_IN, D_SAE)).astype("f4"),
                        W_dec=rng.standard_normal((D_SAE, D_IN)).astype("f4"), b_enc=np.zeros(D_SAE, "f4"),
                        b_dec=np.zeros(D_IN, "f4"), threshold=np.zeros(D_SAE, "f4"))
    data = bytearray((folder / "params.npz").read_bytes())
    for i in range(120, 200):
        data[i] ^= 0x5A
    (folder / "params.npz").write_bytes(bytes(data))
    with pytest.raises(FeaturelensError, match="is not a readable .npz archive of arrays"):
        GemmaScopeFormat().load(str(folder))


def test_deeply_nested_json_in_a_header_or_config_is_one_sentence(tmp_path: Path) -> None:
    """Python's json raises RecursionError (not JSONDecodeError) past ~1000 levels."""
    import struct

    folder = saelens(tmp_path / "d")
    deep = b"[" * 200_000 + b"]" * 200_000
    weights = folder / "sae_weights.safetensors"
    weights.write_bytes(struct.pack("<Q", len(deep)) + deep + b"\0" * 64)
    with pytest.raises(FeaturelensError, match="has a header that is not JSON"):
        SAELensFormat().load(str(folder))
    (folder / "cfg.json").write_bytes(b'{"a":' * 100_000 + b"1" + b"}" * 100_000)
    with pytest.raises(FeaturelensError, match="is not valid JSON"):
        SAELensFormat().load(str(folder))
