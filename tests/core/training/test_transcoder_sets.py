"""`featurelens train --architecture transcoder --layers ...`: one transcoder per layer, one set,
resumable layer by layer, loadable as one dictionary whose features carry their layer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from featurelens.core.errors import FeaturelensError
from featurelens.core.training import train_dictionary
from featurelens.core.training.transcoder_sets import train_transcoder_set
from featurelens.plugins.formats.transcoder_sets import TranscoderSetFormat

pytestmark = pytest.mark.usefixtures("one_thread")

ARGS = ["--architecture", "transcoder", "--layers", "all", "--d-sae", "48", "--k", "4", "--tokens", "1024",
        "--batch-size", "256", "--buffer-rows", "512", "--lr", "0.003", "--device", "cpu", "--context", "32",
        "--option", "skip=true"]


def test_train_all_layers_in_one_command(cli, tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "set"
    result = cli("train", "--model", tiny_model_dir, "--output", out, "--name", "tiny-set", *ARGS)
    assert result.exit_code == 0, result.output
    assert "Trained a transcoder set of 2 layers (96 features)" in result.output
    tset = TranscoderSetFormat().load(str(out))
    assert tset.layout.layers == [0, 1] and tset.d_sae == 96 and tset.layout.skip
    assert tset.hookpoints == ["blocks.0.ln2.hook_normalized", "blocks.1.ln2.hook_normalized"]
    assert tset.transcoder(1).W_skip is not None and tset.dictionary_id == "tiny-set"
    again = cli("train", "--model", tiny_model_dir, "--output", out, "--name", "tiny-set", *ARGS)
    assert again.exit_code == 0 and "Already trained" in again.output
    other = cli("train", "--model", tiny_model_dir, "--output", out, "--name", "tiny-set",
                *[a if a != "all" else "1" for a in ARGS])
    assert other.exit_code != 0 and "holds a transcoder set of layers [0, 1]" in other.output


def test_a_killed_set_resumes_without_training_a_layer_twice(tiny_model_dir: Path, tmp_path: Path) -> None:
    from featurelens.core.host.manager import create

    backend = create("model_backend", "hf", str(tiny_model_dir), device="cpu")
    out = tmp_path / "set"
    trained: list[str] = []

    class Killed(Exception):
        pass

    def dies_on_layer_1(**kwargs):
        if kwargs["hookpoint"].startswith("blocks.1."):
            raise Killed
        trained.append(kwargs["hookpoint"])
        return train_dictionary(**kwargs)

    options = dict(d_sae=32, k=4, tokens=512, batch_size=256, buffer_rows=512, context=32, device="cpu",
                   progress=False)
    with pytest.raises(Killed):
        train_transcoder_set(backend=backend, output=out, train=dies_on_layer_1, **options)
    assert not (out / "transcoder_set.json").exists() and (out / "layer_0" / "training.json").is_file()

    calls: list[bool] = []

    def counting(**kwargs):
        result = train_dictionary(**kwargs)
        calls.append(result.already_done)
        return result

    result = train_transcoder_set(backend=backend, output=out, train=counting, **options)
    assert calls == [True, False]  # layer 0 was kept, layer 1 trained once
    assert (out / "transcoder_set.json").is_file() and not result.already_done
    tset = TranscoderSetFormat().load(str(out))
    x = torch.randn(3, 32)
    torch.testing.assert_close(tset.transcoder(0)(x), result.layers[0].dictionary(x))


def test_layers_outside_the_model_are_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    from featurelens.core.host.manager import create

    backend = create("model_backend", "hf", str(tiny_model_dir), device="cpu")
    with pytest.raises(FeaturelensError, match="outside 0..1"):
        train_transcoder_set(backend=backend, output=tmp_path / "x", layers="0-5")
    with pytest.raises(FeaturelensError, match="inside a block"):
        train_transcoder_set(backend=backend, output=tmp_path / "x", input_hook="blocks.0.hook_mlp_in")
