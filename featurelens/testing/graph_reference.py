"""circuit-tracer side by side with featurelens.graphs (slow test, benchmarks/graphs.py).

circuit-tracer 0.5 lives in its own venv (scripts/reference_circuit_tracer.sh) and runs
as a subprocess (scripts/circuit_tracer_reference.py) on the same model folder, the same
transcoder files and the same token ids; its graph comes back as a safetensors file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import torch

ENV_VENV = "FEATURELENS_CIRCUIT_TRACER_VENV"
DEFAULT_VENV = Path("/work/refvenvs/circuit-tracer")
REPO = Path(__file__).resolve().parents[2]


def circuit_tracer_python() -> Path | None:
    """The reference venv's python, if it is installed."""
    python = Path(os.environ.get(ENV_VENV, DEFAULT_VENV)) / "bin" / "python"
    return python if python.exists() else None


def reference_model_folder(source: Path, dest: Path) -> Path:
    """A copy of a transformers folder that transformers 4.x reads (weights linked, not copied).

    transformers 5 writes ``"tokenizer_class": "TokenizersBackend"``, which 4.x does not know
    (the copy names ``PreTrainedTokenizerFast``), and keeps the rotary base in
    ``rope_parameters``, where 4.x does not look: it would silently use its default base
    10000 instead of SmolLM2's 100000 and attend differently (the copy repeats
    ``rope_theta`` at the top level)."""
    dest.mkdir(parents=True, exist_ok=True)
    for item in source.iterdir():
        target = dest / item.name
        if target.exists():
            continue
        if item.name == "tokenizer_config.json":
            config = json.loads(item.read_text())
            config["tokenizer_class"] = "PreTrainedTokenizerFast"
            target.write_text(json.dumps(config))
        elif item.name == "config.json":
            config = json.loads(item.read_text())
            rope = config.get("rope_parameters") or {}
            if "rope_theta" in rope and rope.get("rope_type", "default") == "default":
                config["rope_theta"] = rope["rope_theta"]
            target.write_text(json.dumps(config))
        elif item.suffix == ".safetensors":
            os.symlink(item.resolve(), target)
        else:
            shutil.copy(item, target)
    return dest


def write_random_set(folder: Path, *, n_layers: int, d_model: int, d_transcoder: int, seed: int = 0,
                     bias: float = -0.02) -> Path:
    """Random ReLU transcoders in circuit-tracer's per-layer layout, plus its config.yaml."""
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for layer in range(n_layers):
        save_file({"W_enc": torch.randn(d_transcoder, d_model, generator=gen) / d_model**0.5,
                   "b_enc": torch.full((d_transcoder,), bias),
                   "W_dec": torch.randn(d_transcoder, d_model, generator=gen) / d_transcoder**0.5,
                   "b_dec": torch.zeros(d_model)}, str(folder / f"layer_{layer}.safetensors"))
        names.append(f"layer_{layer}.safetensors")
    lines = ["model_kind: transcoder_set", "feature_input_hook: mlp.hook_in",
             "feature_output_hook: hook_mlp_out", "transcoders:"] + [f"  - {name}" for name in names]
    (folder / "config.yaml").write_text("\n".join(lines) + "\n")
    return folder


def run_circuit_tracer(model: Path, transcoders: Path, ids: list[int], out: Path, *,
                       max_feature_nodes: int | None = None, batch_size: int = 64, threads: int = 2,
                       timeout: float = 1800) -> dict[str, torch.Tensor]:
    """circuit-tracer's graph of ``ids`` (see scripts/circuit_tracer_reference.py)."""
    from safetensors.torch import load_file

    python = circuit_tracer_python()
    if python is None:
        raise RuntimeError("circuit-tracer is not installed; run scripts/reference_circuit_tracer.sh")
    command = [str(python), str(REPO / "scripts" / "circuit_tracer_reference.py"), str(model), str(transcoders),
               str(out), "--ids", ",".join(map(str, ids)), "--batch-size", str(batch_size)]
    if max_feature_nodes is not None:
        command += ["--max-feature-nodes", str(max_feature_nodes)]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1")
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"circuit-tracer failed ({done.returncode}): {done.stderr[-3000:]}")
    return load_file(str(out))
