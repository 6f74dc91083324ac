"""Dictionaries by name: ``saelens:<release>/<sae_id>`` and ``hf:<repo>[/<subfolder>]``.

Both resolve to a folder in the Hugging Face cache, which the registered formats then
read like any local checkpoint. ``hf:`` names a repository (and optionally a folder
inside it: sparsify keeps one per hookpoint, Gemma Scope one per width and L0);
``saelens:`` is looked up in SAELens's pretrained table (``sae_lens`` must be
installed) to find its repository and folder.

A cached checkpoint is used without touching the network (``local_files_only``
first), so offline machines work; only a checkpoint missing from the cache is
downloaded, and where that is impossible the answer is one sentence saying what to
download and where the cache is.
"""

from __future__ import annotations

import os
from pathlib import Path

from featurelens.core.errors import FeaturelensError

PREFIXES = ("saelens:", "hf:")


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


def hf_folder(repo: str, subfolder: str | None, spec: str) -> Path:
    """The cached folder of ``repo`` (``subfolder`` inside it), downloading only if missing."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    patterns = [f"{subfolder}/*"] if subfolder else None
    cache = _cache_dir()
    try:
        root = Path(snapshot_download(repo, allow_patterns=patterns, cache_dir=cache, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError):
        root = None
    if root is None or not (root / subfolder if subfolder else root).exists():
        what = f"{repo}" + (f" (folder {subfolder})" if subfolder else "")
        fetch = f"huggingface-cli download {repo}" + (f" --include '{subfolder}/*'" if subfolder else "")
        if _offline():
            raise FeaturelensError(
                f"{spec} is not in the Hugging Face cache at {cache} and HF_HUB_OFFLINE is set; "
                f"download {what} first with `{fetch}` (or copy that cache here).")
        try:
            root = Path(snapshot_download(repo, allow_patterns=patterns, cache_dir=cache))
        except RepositoryNotFoundError:
            raise FeaturelensError(
                f"{spec}: there is no Hugging Face repository {repo} (or it is private: set HF_TOKEN); "
                "check the name.") from None
        except (HfHubHTTPError, OSError, ValueError) as error:
            raise FeaturelensError(
                f"{spec} is not in the Hugging Face cache at {cache} and could not be downloaded "
                f"({type(error).__name__}); download {what} with `{fetch}` where there is network.") from None
    folder = root / subfolder if subfolder else root
    if not folder.exists():
        raise FeaturelensError(f"{spec}: the repository {repo} has no folder {subfolder}; check the path.")
    return folder


def saelens_location(release: str, sae_id: str, spec: str) -> tuple[str, str | None]:
    """The repository and folder of a SAELens pretrained SAE, from SAELens's own table."""
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
    return entry.repo_id, (saes[sae_id].strip("/") or None)


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
        repo, sub = saelens_location(release, sae_id, spec)
        return str(hf_folder(repo, sub, spec)), {"saelens_release": release, "saelens_sae_id": sae_id,
                                                 "hf_repo": repo, **({"hf_folder": sub} if sub else {})}
    return spec, {}
