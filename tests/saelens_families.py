"""Checkpoints of each SAELens pretrained family, loaded by name by featurelens and by
SAELens itself from the same Hugging Face cache folder, and their encodings compared.

Run in the reference environment (PYTHONPATH = repository + reference libraries, see
scripts/reference_libs.sh) with HF_HUB_CACHE set to an empty folder and HF_HUB_OFFLINE=1:
``python tests/saelens_families.py``. For one release of each family that featurelens
reads, taken from SAELens's own ``pretrained_saes.yaml``, it writes the files that
release's loader reads, in the repository's layout, with random weights (at the sizes
SAELens's loader derives from the names where it does so), then prints one JSON line
per family: the largest difference between featurelens's ``encode`` and SAELens's
``SAE.encode`` of the same inputs. Families featurelens refuses get the sentence it
refuses them with.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

COMMIT = "0123456789abcdef0123456789abcdef01234567"
CACHE = Path(os.environ["HF_HUB_CACHE"])


def snapshot(repo: str) -> Path:
    base = CACHE / f"models--{repo.replace('/', '--')}"
    (base / "refs").mkdir(parents=True, exist_ok=True)
    (base / "refs" / "main").write_text(COMMIT)
    folder = base / "snapshots" / COMMIT
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def unit_rows(n: int, d: int, g: torch.Generator) -> torch.Tensor:
    w = torch.randn(n, d, generator=g)
    return w / w.norm(dim=1, keepdim=True)


def saelens_folder(folder: Path, cfg: dict, d_in: int, d_sae: int, g: torch.Generator) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    save_file({"W_enc": torch.randn(d_in, d_sae, generator=g) / d_in ** 0.5,
               "b_enc": torch.randn(d_sae, generator=g) * 0.1, "W_dec": unit_rows(d_sae, d_in, g),
               "b_dec": torch.randn(d_in, generator=g) * 0.5}, str(folder / "sae_weights.safetensors"))
    save_file({"sparsity": torch.randn(d_sae, generator=g) - 3}, str(folder / "sparsity.safetensors"))
    (folder / "cfg.json").write_text(json.dumps(cfg))


def gemma_params(folder: Path, d_in: int, d_sae: int, g: torch.Generator) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "params.npz",
             W_enc=(torch.randn(d_in, d_sae, generator=g) / d_in ** 0.5).numpy(),
             W_dec=unit_rows(d_sae, d_in, g).numpy(), b_enc=(torch.randn(d_sae, generator=g) * 0.1).numpy(),
             b_dec=(torch.randn(d_in, generator=g) * 0.5).numpy(),
             threshold=(torch.rand(d_sae, generator=g) * 0.2).numpy())


def dictionary_learning(folder: Path, d_in: int, d_sae: int, k: int, g: torch.Generator) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    decoder = unit_rows(d_sae, d_in, g)
    torch.save({"encoder.weight": torch.randn(d_sae, d_in, generator=g) / d_in ** 0.5,
                "encoder.bias": torch.randn(d_sae, generator=g) * 0.1, "decoder.weight": decoder.T.contiguous(),
                "b_dec": torch.randn(d_in, generator=g) * 0.5, "k": torch.tensor(k),
                "threshold": torch.tensor(-1.0)}, folder / "ae.pt")
    (folder / "config.json").write_text(json.dumps({
        "trainer": {"dict_class": "AutoEncoderTopK", "trainer_class": "TopKTrainer", "activation_dim": d_in,
                    "dict_size": d_sae, "k": k, "layer": 12, "lm_name": "google/gemma-2-2b"},
        "buffer": {"ctx_len": 128}}))


class Width:
    """The model side load_dictionary asks: the hookpoint's width."""

    def __init__(self, d_in: int) -> None:
        self.d_in, self.model_id = d_in, "stand-in"

    def hookpoint_width(self, hookpoint: str) -> int:
        return self.d_in


def main() -> None:
    from sae_lens import SAE
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    from featurelens.core.dictionaries.loading import load_dictionary
    from featurelens.core.dictionaries.pretrained import SAELENS_FAMILIES
    from featurelens.core.errors import FeaturelensError

    table = get_pretrained_saes_directory()
    g = torch.Generator().manual_seed(0)
    first: dict[object, tuple[str, str]] = {}
    for release, entry in table.items():
        first.setdefault(entry.conversion_func, (release, next(iter(entry.saes_map))))
    cases: list[tuple[str, str, str, int, bool]] = []  # (family, release, sae id, d_in, centred)

    # No conversion, configs written before SAELens 6 (flat, expansion_factor), with an override.
    release, sae_id = "gpt2-small-res-jb", "blocks.0.hook_resid_pre"
    entry = table[release]
    pre6 = {"model_name": "gpt2-small", "hook_point": sae_id, "hook_point_layer": 0, "hook_point_head_index": None,
            "d_in": 48, "d_sae": 192, "expansion_factor": 4, "b_dec_init_method": "geometric_median",
            "dataset_path": "Skylion007/openwebtext", "context_size": 128, "l1_coefficient": 8e-05,
            "lr": 0.0004, "train_batch_size": 4096, "use_ghost_grads": True, "device": "mps", "seed": 42,
            "dtype": "torch.float32"}
    saelens_folder(snapshot(entry.repo_id) / entry.saes_map[sae_id], pre6, 48, 192, g)
    cases.append(("none, before 6.0 (center_writing_weights)", release, sae_id, 48, True))

    # No conversion, a SAELens 6 config (architecture + metadata), TopK.
    release, sae_id = first[None]
    entry = table[release]
    six = {"architecture": "topk", "d_in": 40, "d_sae": 160, "k": 8, "dtype": "float32", "device": "cpu",
           "apply_b_dec_to_input": True, "normalize_activations": "none", "reshape_activations": "none",
           "rescale_acts_by_decoder_norm": False,
           "metadata": {"model_name": entry.model, "hook_name": sae_id, "sae_lens_version": "6.54.12"}}
    saelens_folder(snapshot(entry.repo_id) / entry.saes_map[sae_id], six, 40, 160, g)
    cases.append(("none, SAELens 6", release, sae_id, 40, False))

    # Gemma Scope params.npz (sizes from the names, as SAELens derives them).
    release, sae_id = "gemma-scope-2b-pt-res", "embedding/width_4k/average_l0_6"
    gemma_params(snapshot(table[release].repo_id) / table[release].saes_map[sae_id], 2304, 4096, g)
    cases.append(("gemma_2, embedding", release, sae_id, 2304, False))
    sae_id = next(s for s in table[release].saes_map if s.startswith("layer_") and "width_16k" in s)
    gemma_params(snapshot(table[release].repo_id) / table[release].saes_map[sae_id], 2304, 16384, g)
    cases.append(("gemma_2", release, sae_id, 2304, False))
    release, sae_id = first["gemma_2_transcoder"]
    gemma_params(snapshot(table[release].repo_id) / table[release].saes_map[sae_id], 2304, 16384, g)
    cases.append(("gemma_2_transcoder", release, sae_id, 2304, False))

    # dictionary_learning ae.pt folders.
    release, sae_id = first["dictionary_learning_1"]
    dictionary_learning(snapshot(table[release].repo_id) / table[release].saes_map[sae_id], 2304, 4096, 20, g)
    cases.append(("dictionary_learning_1", release, sae_id, 2304, False))

    for family, release, sae_id, d_in, centred in cases:
        spec = f"saelens:{release}/{sae_id}"
        ours = load_dictionary(spec, backend=Width(d_in), hookpoint="any").eval()
        theirs = SAE.from_pretrained(release, sae_id, device="cpu")
        theirs = theirs[0] if isinstance(theirs, tuple) else theirs
        x = torch.randn(64, d_in, generator=g) * 2
        with torch.no_grad():
            want = theirs.encode(x - x.mean(dim=-1, keepdim=True) if centred else x)
            got = ours.encode(x)
        print(json.dumps({"family": family, "spec": spec, "max_diff": float((got - want).abs().max()),
                          "scale": float(want.abs().max()), "active": int((want != 0).sum()),
                          "same_active": bool(torch.equal(got != 0, want != 0))}), flush=True)
        del ours, theirs

    for family, (release, sae_id) in sorted(first.items(), key=str):
        if family in SAELENS_FAMILIES:
            continue
        try:
            load_dictionary(f"saelens:{release}/{sae_id}", backend=Width(8), hookpoint="any")
            refusal = None
        except FeaturelensError as error:
            refusal = str(error)
        print(json.dumps({"family": family, "refused": refusal}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
