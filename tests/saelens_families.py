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


def scope_2(folder: Path, d_in: int, d_sae: int, g: torch.Generator, *, affine: bool = False,
            config: dict | None = None) -> None:
    """A Gemma Scope 2 folder: params.safetensors (lower-case names), config.json."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {"w_enc": torch.randn(d_in, d_sae, generator=g) / d_in ** 0.5, "w_dec": unit_rows(d_sae, d_in, g),
               "b_enc": torch.randn(d_sae, generator=g) * 0.1, "b_dec": torch.randn(d_in, generator=g) * 0.5,
               "threshold": torch.rand(d_sae, generator=g) * 0.2}
    if affine:
        tensors["affine_skip_connection"] = torch.randn(d_in, d_in, generator=g) * 0.01
    save_file(tensors, str(folder / "params.safetensors"))
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config))


def llama_scope(folder: Path, d_in: int, d_sae: int, g: torch.Generator, *, hook: str) -> None:
    """A Llama Scope folder: hyperparams.json + checkpoints/final.safetensors (lm_saes names)."""
    (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
    save_file({"encoder.weight": torch.randn(d_sae, d_in, generator=g) / d_in ** 0.5 * 0.02,
               "encoder.bias": torch.randn(d_sae, generator=g) * 0.1,
               "decoder.weight": unit_rows(d_sae, d_in, g).T.contiguous(),
               "decoder.bias": torch.randn(d_in, generator=g) * 0.5}, str(folder / "checkpoints" / "final.safetensors"))
    (folder / "hyperparams.json").write_text(json.dumps({
        "d_model": d_in, "d_sae": d_sae, "expansion_factor": d_sae // d_in, "hook_point_in": hook,
        "hook_point_out": hook, "act_fn": "jumprelu", "jump_relu_threshold": 0.15, "norm_activation": "dataset-wise",
        "dataset_average_activation_norm": {"in": 0.9, "out": 0.9}, "apply_decoder_bias_to_pre_encoder": False,
        "use_decoder_bias": True, "sparsity_include_decoder_norm": True, "top_k": 50}))


def llama_scope_r1(folder: Path, d_in: int, factor: int, g: torch.Generator, *, hook: str) -> None:
    """A Llama Scope R1 folder: config.json + sae_weights.safetensors with log thresholds."""
    folder.mkdir(parents=True, exist_ok=True)
    d_sae = d_in * factor
    save_file({"encoder.weight": torch.randn(d_sae, d_in, generator=g) / d_in ** 0.5 * 0.02,
               "encoder.bias": torch.randn(d_sae, generator=g) * 0.1,
               "decoder.weight": unit_rows(d_sae, d_in, g).T.contiguous(),
               "decoder.bias": torch.randn(d_in, generator=g) * 0.5,
               "log_jumprelu_threshold": torch.log(torch.rand(d_sae, generator=g) * 0.3 + 0.01)},
              str(folder / "sae_weights.safetensors"))
    (folder / "config.json").write_text(json.dumps({"d_model": d_in, "expansion_factor": factor,
                                                    "hook_point_in": hook, "hook_point_out": hook,
                                                    "act_fn": "jumprelu"}))


def mwhanna(repo: Path, layer: int, d_in: int, d_sae: int, g: torch.Generator) -> None:
    """circuit-tracer's per-layer transcoder file, with the repository's wandb and base configs."""
    save_file({"W_enc": torch.randn(d_sae, d_in, generator=g) / d_in ** 0.5,
               "b_enc": torch.randn(d_sae, generator=g) * 0.1, "W_dec": unit_rows(d_sae, d_in, g),
               "b_dec": torch.randn(d_in, generator=g) * 0.5}, str(repo / f"layer_{layer}.safetensors"))
    (repo / "wandb-config.yaml").write_text(
        f"d_model:\n  value: {d_in}\nd_feature:\n  value: {d_sae}\nbatch_size:\n  value: 1024\n")
    (repo / "config.yaml").write_text("model_name: Qwen/Qwen3-4B\nmodel_kind: transcoder_set\n"
                                      "feature_input_hook: mlp.hook_in\nfeature_output_hook: mlp.hook_out\n")


def clt_layer(repo: Path, layer: int, n_layers: int, d_in: int, d_sae: int, g: torch.Generator) -> None:
    """circuit-tracer's cross-layer files for one layer: W_enc_{l} (+ biases), W_dec_{l} to every later layer."""
    save_file({f"W_enc_{layer}": torch.randn(d_sae, d_in, generator=g) / d_in ** 0.5,
               f"b_enc_{layer}": torch.randn(d_sae, generator=g) * 0.1,
               f"b_dec_{layer}": torch.randn(d_in, generator=g) * 0.5}, str(repo / f"W_enc_{layer}.safetensors"))
    save_file({f"W_dec_{layer}": torch.randn(d_sae, n_layers - layer, d_in, generator=g) * 0.1},
              str(repo / f"W_dec_{layer}.safetensors"))
    (repo / "config.yaml").write_text("model_name: google/gemma-2-2b\nmodel_kind: cross_layer_transcoder\n"
                                      "feature_input_hook: hook_resid_mid\nfeature_output_hook: hook_mlp_out\n")


def pt_state_dict(file: Path, names: tuple[str, str, str, str], d_in: int, d_sae: int, g: torch.Generator) -> None:
    """A single-file torch.save SAE state dict: encoder [d_sae, d_in] + bias, decoder [d_in, d_sae] + bias."""
    file.parent.mkdir(parents=True, exist_ok=True)
    enc_w, enc_b, dec_w, dec_b = names
    torch.save({enc_w: torch.randn(d_sae, d_in, generator=g) / d_in ** 0.5, enc_b: torch.randn(d_sae, generator=g) * 0.1,
                dec_w: unit_rows(d_sae, d_in, g).T.contiguous(), dec_b: torch.randn(d_in, generator=g) * 0.5}, file)


#: The .pt families' SAELens loaders fix d_in and d_sae from the model's name (d_sae 65536 for
#: DeepSeek and Goodfire); the files here are smaller, and SAELens is told their sizes
#: through the cfg_overrides its loaders merge last.
SMALL = {"deepseek_r1": (64, 256), "goodfire": (64, 256), "qwen_scope": (64, 256)}


def shrink_pt_loaders() -> None:
    from sae_lens.loading import pretrained_sae_loaders

    loaders = pretrained_sae_loaders.NAMED_PRETRAINED_SAE_LOADERS
    for family, (d_in, d_sae) in SMALL.items():
        def small(repo_id, folder_name, device="cpu", force_download=False, cfg_overrides=None, *, _real=loaders[family],
                  _size=(d_in, d_sae)):
            return _real(repo_id, folder_name, device, force_download,
                         {**(cfg_overrides or {}), "d_in": _size[0], "d_sae": _size[1]})
        loaders[family] = small


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
    # SAELens's gemma_3 and cross-layer loaders read tensor shapes from the hub by HTTP
    # range requests on the file's header; offline, the same header is read from the cache.
    from huggingface_hub import hf_hub_download
    from sae_lens.loading import pretrained_sae_loaders

    from featurelens.plugins.formats.headers import safetensors_header

    pretrained_sae_loaders.get_safetensors_tensor_shapes = lambda repo, name: {
        k: list(shape) for k, (shape, _) in safetensors_header(Path(hf_hub_download(repo, name))).items()}
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

    # Gemma Scope 2 (gemma_3): an SAE with config.json, a transcoder without, an affine transcoder.
    release = "gemma-scope-2-4b-pt-res"
    sae_id = next(iter(table[release].saes_map))
    scope_2(snapshot(table[release].repo_id) / table[release].saes_map[sae_id], 64, 256, g,
            config={"architecture": "jump_relu", "model_name": "gemma-v3-4b-pt",
                    "hf_hook_point_in": "model.layers.9.output"})
    cases.append(("gemma_3", release, sae_id, 64, False))
    release = "gemma-scope-2-4b-pt-transcoders"
    for sae_id in [s for s in table[release].saes_map if "layer_17_width_16k_l0_big" in s]:
        scope_2(snapshot(table[release].repo_id) / table[release].saes_map[sae_id], 64, 256, g,
                affine=sae_id.endswith("_affine"))
        cases.append(("gemma_3, transcoder" + (" affine" if sae_id.endswith("_affine") else ""), release,
                      sae_id, 64, False))

    # Llama Scope (hyperparams.json + checkpoints/final.safetensors, the table's norm_scaling_factor).
    release, sae_id = first["llama_scope"]
    llama_scope(snapshot(table[release].repo_id) / table[release].saes_map[sae_id], 64, 512, g,
                hook="blocks.0.hook_attn_out")
    cases.append(("llama_scope", release, sae_id, 64, False))
    release, sae_id = first["llama_scope_r1_distill"]
    llama_scope_r1(snapshot(table[release].repo_id) / table[release].saes_map[sae_id], 64, 8, g,
                   hook="blocks.0.hook_resid_post")
    cases.append(("llama_scope_r1_distill", release, sae_id, 64, False))

    # mwhanna's transcoders: one circuit-tracer file per layer at the repository's root.
    release, sae_id = first["mwhanna_transcoder"]
    mwhanna(snapshot(table[release].repo_id), int(sae_id.rsplit("_", 1)[-1]), 48, 192, g)
    cases.append(("mwhanna_transcoder", release, sae_id, 48, False))

    # One layer of mntss's cross-layer transcoder (ReLU: SAELens's loader reads no threshold).
    release = "mntss-gemma-2-2b-2.5m-clt-as-per-layer"
    sae_id = "layer_2"
    clt_layer(snapshot(table[release].repo_id), int(table[release].saes_map[sae_id]), 26, 48, 160, g)
    cases.append(("mntss_clt_layer_transcoder", release, sae_id, 48, False))

    # Single-file torch.save state dicts (read by featurelens's opcode walker, never unpickled).
    shrink_pt_loaders()
    from featurelens.plugins.formats.pt_files import LAYOUTS

    for family in ("deepseek_r1", "goodfire", "qwen_scope"):
        release, sae_id = first[family]
        d_in, d_sae = SMALL[family]
        pt_state_dict(snapshot(table[release].repo_id) / table[release].saes_map[sae_id], LAYOUTS[family], d_in,
                      d_sae, g)
        cases.append((family, release, sae_id, d_in, False))

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
