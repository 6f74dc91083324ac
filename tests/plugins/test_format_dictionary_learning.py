"""dictionary_learning format: each dict_class encodes like its formula; loading is safe."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from featurelens.core.errors import FeaturelensError
from featurelens.plugins.formats.dictionary_learning import DictionaryLearningFormat

D_IN, D_SAE = 8, 24


def _write(folder: Path, dict_class: str, state: dict, **trainer) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / "ae.pt")
    cfg = {"trainer": {"dict_class": dict_class, "activation_dim": D_IN, "dict_size": D_SAE,
                       "lm_name": "tiny", **trainer}, "buffer": {"d_submodule": D_IN}}
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


def _linear_state(bias_name: str, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"encoder.weight": torch.randn(D_SAE, D_IN, generator=g), "encoder.bias": torch.randn(D_SAE, generator=g) * 0.1,
            "decoder.weight": torch.randn(D_IN, D_SAE, generator=g), bias_name: torch.randn(D_IN, generator=g)}


def test_autoencoder(tmp_path: Path) -> None:
    s = _linear_state("bias")
    sae = DictionaryLearningFormat().load(str(_write(tmp_path / "a", "AutoEncoder", s)))
    x = torch.randn(20, D_IN)
    f = torch.relu((x - s["bias"]) @ s["encoder.weight"].T + s["encoder.bias"])
    assert torch.allclose(sae.encode(x), f, atol=1e-5)
    assert torch.allclose(sae.decode(f), f @ s["decoder.weight"].T + s["bias"], atol=1e-5)
    assert sae.model_id == "tiny"


def test_topk_and_batchtopk(tmp_path: Path) -> None:
    s = _linear_state("b_dec")
    s["k"] = torch.tensor(4, dtype=torch.int)
    s["threshold"] = torch.tensor(-1.0)
    topk = DictionaryLearningFormat().load(str(_write(tmp_path / "t", "AutoEncoderTopK", s, k=4)))
    x = torch.randn(20, D_IN)
    post = torch.relu((x - s["b_dec"]) @ s["encoder.weight"].T + s["encoder.bias"])
    top = post.topk(4, sorted=False)
    assert torch.allclose(topk.encode(x), torch.zeros_like(post).scatter(-1, top.indices, top.values), atol=1e-5)
    s["threshold"] = torch.tensor(0.35)
    btk = DictionaryLearningFormat().load(str(_write(tmp_path / "b", "BatchTopKSAE", s, k=4)))
    assert btk.architecture == "batchtopk"
    assert torch.allclose(btk.encode(x), post * (post > 0.35), atol=1e-5)


def test_jumprelu_with_decoder_norm_scaling(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(3)
    s = {"W_enc": torch.randn(D_IN, D_SAE, generator=g), "b_enc": torch.randn(D_SAE, generator=g) * 0.1,
         "W_dec": torch.randn(D_SAE, D_IN, generator=g) * 2, "b_dec": torch.randn(D_IN, generator=g),
         "threshold": torch.rand(D_SAE, generator=g)}
    sae = DictionaryLearningFormat().load(str(_write(tmp_path / "j", "JumpReluAutoEncoder", s)))
    x = torch.randn(30, D_IN)
    pre = x @ s["W_enc"] + s["b_enc"]
    norms = s["W_dec"].norm(dim=1)
    f = torch.relu(pre * (pre > s["threshold"])) * norms
    assert torch.allclose(sae.encode(x), f, atol=1e-4)
    assert torch.allclose(sae.decode(f), (f / norms) @ s["W_dec"] + s["b_dec"], atol=1e-4)


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED_BY_PICKLE",))


def test_pickled_code_is_refused_and_never_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    folder = _write(tmp_path / "evil", "AutoEncoder", {"x": _Payload()})
    with pytest.raises(FeaturelensError, match="featurelens never unpickles a checkpoint"):
        DictionaryLearningFormat().load(str(folder))
    assert not (tmp_path / "PWNED_BY_PICKLE").exists()


@pytest.mark.parametrize("dict_class, mutate, words", [
    ("GatedAutoEncoder", None, "dict_class 'GatedAutoEncoder'"),
    ("AutoEncoder", lambda s: s.pop("bias"), "has no tensor 'bias'"),
    ("AutoEncoder", lambda s: s.__setitem__("encoder.weight", torch.zeros(D_SAE, D_IN + 1)), "has shape"),
])
def test_bad_checkpoints(tmp_path: Path, dict_class: str, mutate, words: str) -> None:
    s = _linear_state("bias")
    if mutate:
        mutate(s)
    with pytest.raises(FeaturelensError, match=words):
        DictionaryLearningFormat().load(str(_write(tmp_path / "x", dict_class, s)))


def test_not_a_torch_file(tmp_path: Path) -> None:
    folder = _write(tmp_path / "n", "AutoEncoder", _linear_state("bias"))
    (folder / "ae.pt").write_bytes(b"this is not a checkpoint")
    with pytest.raises(FeaturelensError, match="ae.pt"):
        DictionaryLearningFormat().load(str(folder))
    with pytest.raises(FeaturelensError, match="does not write"):
        DictionaryLearningFormat().save(object(), str(tmp_path / "o"))
