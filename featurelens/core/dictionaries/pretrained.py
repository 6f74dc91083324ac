"""Dictionaries by name: ``saelens:<release>/<sae_id>`` and ``hf:<repo>[/<subfolder>]``.

Both resolve to a folder in the Hugging Face cache, which the registered formats then
read like any local checkpoint. ``hf:`` names a repository (and optionally a folder
inside it: sparsify keeps one per hookpoint, Gemma Scope one per width and L0);
``saelens:`` is looked up in SAELens's pretrained table (``sae_lens`` must be
installed) to find its repository and folder.

A cached checkpoint is used without touching the network (``local_files_only``
first), so offline machines work; only a checkpoint missing from the cache is
downloaded, and where that is impossible the answer is one sentence naming the
``hf download`` command that fetches exactly the missing files (huggingface_hub's CLI;
``--include`` patterns for a folder, the file's own path for a file entry), and, for a
partly cached repository, which of them are missing.

SAELens's table also says how each release is stored (``conversion_func``); the
registered formats read :data:`SAELENS_FAMILIES`: folders in SAELens's own format (no
conversion), Gemma Scope ``params.npz`` (``gemma_2``, ``gemma_2_transcoder``) and Gemma
Scope 2 ``params.safetensors`` folders (``gemma_3``), dictionary_learning ``ae.pt``
folders (``dictionary_learning_1``), Llama Scope folders (``llama_scope``,
``llama_scope_r1_distill``), circuit-tracer per-layer transcoder files
(``mwhanna_transcoder``) and one layer of a circuit-tracer cross-layer transcoder
(``mntss_clt_layer_transcoder``: its ``W_enc_{l}`` and ``W_dec_{l}`` files), and the
single-file ``torch.save`` state dicts of ``deepseek_r1``, ``goodfire`` and ``qwen_scope``
(read by an opcode walker, never unpickled; Qwen Scope's top-k comes from its repository
name, as SAELens takes it). The others are refused in one sentence before anything is
downloaded (:data:`SAELENS_REFUSED`: attention SAEs at TransformerLens's ``hook_z``, and
temporal SAEs, whose encoder reads earlier tokens). Its
``config_overrides`` are honoured or refused (:func:`overrides_of`):
``center_writing_weights`` is folded into the encoder (:func:`fold_input_centering`),
Gemma Scope embedding SAEs are rescaled by sqrt(d_in) and Llama Scope SAEs by the table's
``norm_scaling_factor`` as SAELens loads them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from featurelens.core.errors import FeaturelensError

PREFIXES = ("saelens:", "hf:")

#: SAELens ``conversion_func`` values whose checkpoints the registered formats read.
SAELENS_FAMILIES = {None: "SAELens folders", "gemma_2": "Gemma Scope params.npz",
                    "gemma_2_transcoder": "Gemma Scope transcoder params.npz",
                    "gemma_3": "Gemma Scope 2 params.safetensors",
                    "dictionary_learning_1": "dictionary_learning ae.pt folders",
                    "llama_scope": "Llama Scope folders", "llama_scope_r1_distill": "Llama Scope R1 folders",
                    "mwhanna_transcoder": "circuit-tracer per-layer transcoder files",
                    "mntss_clt_layer_transcoder": "one layer of a circuit-tracer cross-layer transcoder",
                    "deepseek_r1": "DeepSeek R1 .pt state dicts", "goodfire": "Goodfire .pt/.pth state dicts",
                    "qwen_scope": "Qwen Scope .sae.pt state dicts"}

#: Why the other families are not read (what featurelens would need to reproduce).
SAELENS_REFUSED = {
    "connor_rob_hook_z": "attention SAEs trained on TransformerLens's hook_z: per-head attention values with the "
                         "LayerNorm and value biases folded out, a hookpoint featurelens does not have",
    "temporal": "temporal SAEs, whose encoder attends over earlier tokens' activations, which a per-token "
                "encode cannot compute",
}

#: Families whose SAELens loader rescales inputs by the table's ``norm_scaling_factor``
#: (folded into the weights; the Llama Scope format takes it as ``norm_scale``).
NORM_SCALED = ("llama_scope", "llama_scope_r1_distill")

#: File endings that mark a SAELens entry whose path is a file, not a folder.
FILE_SUFFIXES = (".pt", ".pth", ".safetensors", ".npz", ".bin", ".ckpt")

#: ``config_overrides`` keys that change nothing featurelens computes (training metadata).
METADATA_OVERRIDES = ("dataset_path", "dataset_trust_remote_code", "context_size", "prepend_bos")


def is_named(spec: str) -> bool:
    """True for ``saelens:...`` and ``hf:...`` specs."""
    return spec.startswith(PREFIXES)


def _cache_dir() -> str:
    """The hub cache, read from the environment now (huggingface_hub reads it at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def split_hf(name: str) -> tuple[str, str | None]:
    """``org/repo[/sub/folder]`` -> ``("org/repo", "sub/folder" or None)``."""
    parts = [p for p in name.strip("/").split("/") if p]
    if len(parts) < 2:
        raise FeaturelensError(
            f"--dictionary hf:{name} does not name a repository; write hf:<org>/<repo>[/<subfolder>], "
            "e.g. hf:EleutherAI/sae-SmolLM2-135M-64x/layers.6.")
    repo, sub = "/".join(parts[:2]), parts[2:]
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo)
    except HFValidationError:
        raise FeaturelensError(
            f"--dictionary hf:{name} names {repo!r}, which is not a Hugging Face repository id (letters, "
            "digits, '-', '_' and '.', at most 96 characters, no '--' or '..'); check the name.") from None
    if any(part in (".", "..") for part in sub):
        raise FeaturelensError(
            f"--dictionary hf:{name} climbs out of the repository with '..'; name a folder inside {repo}.")
    return repo, ("/".join(sub) or None)


def download_command(repo: str, subfolder: str | None, is_file: bool = False) -> str:
    """The ``hf download`` command (huggingface_hub's CLI) that fetches exactly what a
    name needs: one file by its path, a folder by an ``--include`` pattern, or the repo."""
    if subfolder and is_file:
        return f"hf download {repo} {subfolder}"
    return f"hf download {repo}" + (f" --include '{subfolder}/*'" if subfolder else "")


def _missing_files(repo: str, subfolder: str | None, cache: str) -> str:
    """What a partly cached repository lacks (from the hub's listing when it answers, else
    what the cache does hold), as the start of a sentence; empty when nothing is cached."""
    from huggingface_hub import scan_cache_dir

    try:
        cached = next((r for r in scan_cache_dir(cache).repos if r.repo_id == repo and r.repo_type == "model"), None)
    except Exception:  # no cache folder yet, or one huggingface_hub cannot scan
        return ""
    if cached is None:
        return ""
    have = {f.file_path.relative_to(rev.snapshot_path).as_posix() for rev in cached.revisions for f in rev.files}

    def wanted_by_name(name: str) -> bool:
        return not subfolder or name == subfolder or name.startswith(subfolder.rstrip("/") + "/")

    listed: list[str] = []
    if not _offline():
        try:
            from huggingface_hub import HfApi

            listed = [f for f in HfApi().list_repo_files(repo) if wanted_by_name(f)]
        except Exception:  # the hub is unreachable (offline without HF_HUB_OFFLINE) or refuses
            listed = []
    missing = sorted(set(listed) - have)
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        return f"the cache holds part of {repo} but lacks {shown}; "
    if not any(wanted_by_name(h) for h in have):
        held = ", ".join(sorted(have)[:5]) + (f" and {len(have) - 5} more" if len(have) > 5 else "")
        return f"the cache holds only {held or 'no files'} of {repo}, nothing of {subfolder or 'it'}; "
    return ""


@contextmanager
def _download_errors(spec: str, repo: str, part: str | None, cache: str, what: str,
                     fetch: str) -> Iterator[None]:
    """A download that failed, as one sentence: no such repository, or no network here."""
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    try:
        yield
    except RepositoryNotFoundError:
        raise FeaturelensError(
            f"{spec}: there is no Hugging Face repository {repo} (or it is private: set HF_TOKEN); "
            "check the name.") from None
    except (HfHubHTTPError, OSError, ValueError) as error:
        raise FeaturelensError(
            f"{spec} is not in the Hugging Face cache at {cache} and could not be downloaded "
            f"({type(error).__name__}); {_missing_files(repo, part, cache)}download {what} with "
            f"`{fetch}` where there is network.") from None


def hf_file(repo: str, filename: str, spec: str) -> Path:
    """The cached file ``filename`` of ``repo`` (a SAELens entry whose path is a file)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    cache = _cache_dir()
    fetch = download_command(repo, filename, is_file=True)
    try:
        return Path(hf_hub_download(repo, filename, cache_dir=cache, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError):
        pass
    if _offline():
        raise FeaturelensError(
            f"{spec} is not in the Hugging Face cache at {cache} and HF_HUB_OFFLINE is set; "
            f"{_missing_files(repo, filename, cache)}download it first with `{fetch}` (or copy that cache here).")
    with _download_errors(spec, repo, filename, cache, "it", fetch):
        return Path(hf_hub_download(repo, filename, cache_dir=cache))


def hf_folder(repo: str, subfolder: str | None, spec: str) -> Path:
    """The cached folder of ``repo`` (``subfolder`` inside it), downloading only if missing."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        LocalEntryNotFoundError,
    )

    patterns = [f"{subfolder}/*"] if subfolder else None
    cache = _cache_dir()
    try:
        root = Path(snapshot_download(repo, allow_patterns=patterns, cache_dir=cache, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError):
        root = None
    if root is None or not (root / subfolder if subfolder else root).exists():
        what = f"{repo}" + (f" (folder {subfolder})" if subfolder else "")
        fetch = download_command(repo, subfolder)
        if _offline():
            raise FeaturelensError(
                f"{spec} is not in the Hugging Face cache at {cache} and HF_HUB_OFFLINE is set; "
                f"{_missing_files(repo, subfolder, cache)}download {what} first with `{fetch}` "
                "(or copy that cache here).")
        with _download_errors(spec, repo, subfolder, cache, what, fetch):
            root = Path(snapshot_download(repo, allow_patterns=patterns, cache_dir=cache))
    folder = root / subfolder if subfolder else root
    if not folder.exists():  # the hub answered without it, or was unreachable and the cached copy lacks it
        raise FeaturelensError(
            f"{spec}: neither the cached copy of {repo} nor the hub gave the folder {subfolder}; "
            f"{_missing_files(repo, subfolder, cache)}download it with `{download_command(repo, subfolder)}` "
            "where there is network, or check the path.")
    return folder


def saelens_location(release: str, sae_id: str, spec: str) -> tuple[str, str | None]:
    """The repository and folder of a SAELens pretrained SAE, from SAELens's own table."""
    repo, path, _ = saelens_entry(release, sae_id, spec)
    return repo, path


def saelens_entry(release: str, sae_id: str, spec: str) -> tuple[str, str | None, dict[str, Any]]:
    """The repository, path and ``config_overrides`` of a SAELens pretrained SAE; a family
    featurelens does not read is refused here, before anything is downloaded."""
    try:
        from sae_lens.loading.pretrained_saes_directory import (
            get_pretrained_saes_directory,
        )
    except ImportError:
        raise FeaturelensError(
            f"{spec} is looked up in SAELens's pretrained table, and sae_lens is not installed; "
            "pip install sae-lens, or name the checkpoint directly as hf:<repo>/<folder>.") from None
    table = get_pretrained_saes_directory()
    if release not in table:
        close = sorted(r for r in table if release.split("-")[0] in r)[:5]
        raise FeaturelensError(
            f"{spec}: SAELens has no release {release!r}"
            + (f" (similar: {', '.join(close)})" if close else "") + "; check the release name.")
    entry = table[release]
    saes = getattr(entry, "saes_map", None) or {}
    if sae_id not in saes:
        some = ", ".join(list(saes)[:5])
        raise FeaturelensError(f"{spec}: release {release} has no SAE {sae_id!r} (it has e.g. {some}).")
    family = getattr(entry, "conversion_func", None)
    if family not in SAELENS_FAMILIES:
        why = SAELENS_REFUSED.get(family, "a conversion featurelens does not know")
        raise FeaturelensError(
            f"{spec}: SAELens stores release {release} as {family!r} ({why}), which featurelens does not read; "
            f"it reads {', '.join(SAELENS_FAMILIES.values())}, so load this one with SAELens and save it as a "
            "SAELens folder (sae.save_model(path)), then pass that path.")
    path = str(saes[sae_id]).strip("/") or None
    overrides = dict(getattr(entry, "config_overrides", None) or {})
    if family == "gemma_2" and path and "embedding" in path:
        overrides[EMBEDDING_SCALE] = True  # what SAELens's gemma_2 loader does for these
    if family in NORM_SCALED:
        scale = (getattr(entry, "norm_scaling_factor", None) or {}).get(sae_id)
        if scale is None:
            raise FeaturelensError(
                f"{spec}: SAELens's table gives no norm_scaling_factor for this Llama Scope SAE, so SAELens "
                "rescales its inputs token by token, which featurelens does not reproduce; pick an entry that "
                "has one.")
        overrides[NORM_SCALE] = float(scale)
    if family == "qwen_scope":
        found = QWEN_K.search(entry.repo_id)
        if found is None:
            raise FeaturelensError(
                f"{spec}: SAELens reads this Qwen Scope SAE's k from its repository's name (...-L0_<k>), and "
                f"{entry.repo_id} has none; name the file directly and pass k.")
        overrides[TOPK_K] = int(found[1])
    if family == "mntss_clt_layer_transcoder":
        path = f"W_enc_{path}.safetensors"  # the layer's encoder; its decoders lie beside it
    return entry.repo_id, path, overrides


def overrides_of(config_overrides: dict[str, Any], spec: str) -> dict[str, Any]:
    """What of SAELens's ``config_overrides`` changes encoding, as featurelens options;
    training metadata is kept as provenance, anything else refused in one sentence."""
    out: dict[str, Any] = {}
    for key, value in config_overrides.items():
        if key in METADATA_OVERRIDES:
            continue
        if key == EMBEDDING_SCALE:
            out[EMBEDDING_SCALE] = bool(value)
            continue
        if key == NORM_SCALE:
            out[NORM_SCALE] = float(value)
            continue
        if key == TOPK_K:
            out[TOPK_K] = int(value)
            continue
        if key == "model_from_pretrained_kwargs" and isinstance(value, dict):
            for name, setting in value.items():
                if name == "center_writing_weights":
                    out["center_input"] = bool(setting)
                elif name in ("fold_ln", "center_unembed", "fold_value_biases", "refactor_factored_attn_matrices"):
                    continue  # leave the residual stream's values unchanged (the unembedding and LayerNorm only)
                else:
                    raise FeaturelensError(
                        f"{spec}: SAELens loads its model with {name}={setting!r}, which featurelens cannot "
                        "reproduce on a transformers model; name the checkpoint as hf:<repo>/<folder> to load "
                        "it without SAELens's settings.")
        elif key == "normalize_activations" and value in (None, "none", False):
            continue
        else:
            raise FeaturelensError(
                f"{spec}: SAELens overrides {key}={value!r} for this release, which featurelens does not "
                "reproduce; name the checkpoint as hf:<repo>/<folder> to load it as saved.")
    return out


def fold_input_centering(dictionary: Any, spec: str) -> None:
    """Make ``dictionary`` encode ``x - mean(x)`` (mean over the model dimension) for any ``x``.

    TransformerLens's ``center_writing_weights`` removes from every weight that writes to
    the residual stream its mean over the model dimension, so the residual stream (and
    attention and MLP outputs) SAELens trained on is the plain model's minus its
    per-token mean. Centering is linear, so it folds into the encoder exactly:
    ``W_enc' = W_enc - mean_rows(W_enc)`` and, where ``b_dec`` is subtracted first,
    ``b_enc' = b_enc - mean(b_dec) * sum_rows(W_enc)``; everything that reads the
    encoder (extraction, clamps) then sees the trained behaviour."""
    import torch

    w_enc = getattr(dictionary, "W_enc", None)
    if not isinstance(w_enc, torch.Tensor) or w_enc.dim() != 2:
        raise FeaturelensError(
            f"{spec} asks for center_writing_weights, which featurelens folds into a [d_in, d_sae] encoder, "
            "and this dictionary has none; load it with SAELens instead.")
    with torch.no_grad():
        original = w_enc.detach().double()
        if getattr(dictionary, "apply_b_dec_to_input", False):
            shift = dictionary.b_dec.detach().double().mean() * original.sum(dim=0)
            dictionary.b_enc.copy_((dictionary.b_enc.detach().double() - shift).to(dictionary.b_enc.dtype))
        w_enc.copy_((original - original.mean(dim=0, keepdim=True)).to(w_enc.dtype))
    dictionary.config["center_writing_weights"] = True


def resolve(spec: str) -> tuple[str, dict[str, str]]:
    """A local path for a named dictionary, and where it came from (for the store).

    Plain paths are returned unchanged with empty provenance.
    """
    if spec.startswith("hf:"):
        repo, sub = split_hf(spec[3:])
        return str(hf_folder(repo, sub, spec)), {"hf_repo": repo, **({"hf_folder": sub} if sub else {})}
    if spec.startswith("saelens:"):
        release, _, sae_id = spec[len("saelens:"):].partition("/")
        if not release.strip() or not sae_id.strip("/ "):
            raise FeaturelensError(
                f"--dictionary {spec} needs both parts: saelens:<release>/<sae_id>, "
                "e.g. saelens:gemma-scope-2b-pt-res-canonical/layer_12/width_16k/canonical.")
        repo, sub, overrides = saelens_entry(release, sae_id, spec)
        options = overrides_of(overrides, spec)  # refused before any download
        is_file = bool(sub) and sub.lower().endswith(FILE_SUFFIXES)
        local = hf_file(repo, sub, spec) if is_file and sub else hf_folder(repo, sub, spec)
        if sub and CLT_ENCODER.fullmatch(sub):
            hf_file(repo, sub.replace("W_enc_", "W_dec_"), spec)  # the layer's decoders, beside its encoder
        return str(local), {"saelens_release": release, "saelens_sae_id": sae_id, "hf_repo": repo,
                            **({"hf_folder": sub} if sub else {}),
                            **({OVERRIDES_KEY: options} if options else {})}
    return spec, {}


#: Provenance key carrying the options :func:`overrides_of` derived (applied, then dropped).
OVERRIDES_KEY = "_saelens_overrides"

#: Llama Scope's input scale from SAELens's table, passed to the format's ``load``.
NORM_SCALE = "norm_scale"

#: A cross-layer transcoder's encoder file for one layer (SAELens names the layer alone).
CLT_ENCODER = re.compile(r"W_enc_\d+\.safetensors")


#: Qwen Scope's top-k, from its repository's name (``...-W32K-L0_50``), passed to ``load`` as ``k``
#: (a key no SAELens ``config_overrides`` uses, so a table's own ``k`` override is still refused).
TOPK_K = "qwen_scope_k"
QWEN_K = re.compile(r"-W\d+K-L0_(\d+)$")


def load_options(provenance: dict[str, Any]) -> dict[str, Any]:
    """What a format's ``load`` takes from SAELens's table (``norm_scale``, Qwen Scope's ``k``)."""
    options = provenance.get(OVERRIDES_KEY) or {}
    return {name: options[key] for key, name in ((NORM_SCALE, NORM_SCALE), (TOPK_K, "k")) if key in options}


#: Gemma Scope's embedding SAEs were trained on embeddings before Gemma's sqrt(d_model)
#: scaling; SAELens's gemma_2 loader divides W_enc and multiplies W_dec by sqrt(d_in) so
#: they read the scaled ones, and featurelens loads them the same way.
EMBEDDING_SCALE = "gemma_embedding_scale"


def apply_overrides(dictionary: Any, provenance: dict[str, Any], spec: str) -> dict[str, Any]:
    """Apply what :func:`resolve` derived from SAELens's overrides to the loaded dictionary;
    returns the provenance to record."""
    options = provenance.get(OVERRIDES_KEY) or {}
    if options.get("center_input"):
        fold_input_centering(dictionary, spec)
    if options.get(EMBEDDING_SCALE):
        import torch

        scale = float(dictionary.d_in) ** 0.5
        with torch.no_grad():
            dictionary.W_enc.div_(scale)
            dictionary.W_dec.mul_(scale)
        dictionary.config[EMBEDDING_SCALE] = scale
    return {k: v for k, v in provenance.items() if k != OVERRIDES_KEY}
