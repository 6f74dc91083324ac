"""Hookpoint names -> places in a transformers module tree, and the hooks that read them.

Users name hookpoints the TransformerLens way (``blocks.6.hook_resid_post``) or as a
raw module path (``model.layers.6.mlp``, or relative to the base model as sparsify does:
``layers.6.mlp``). Each name resolves to a :class:`HookSite`: a module and whether its
input or its output is the activation. The module layout of each family (Llama, Gemma,
GPT-2, GPT-NeoX) is one :class:`Family` record, so adding a family is adding data.

:class:`Capture` reads sites with forward hooks and raises :class:`StopForward` as soon
as every requested site is read, so no compute is spent on later layers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from featurelens.core.errors import FeaturelensError
from featurelens.core.model.module_outputs import first_tensor, with_first_tensor

#: TransformerLens hook names inside a block, in the order they run.
BLOCK_HOOKS = (
    "hook_resid_pre", "hook_attn_out", "hook_resid_mid", "hook_mlp_in",
    "ln2.hook_normalized", "mlp.hook_post", "hook_mlp_out", "hook_resid_post",
)
_TL = re.compile(r"^blocks\.(\d+)\.(" + "|".join(re.escape(h) for h in BLOCK_HOOKS) + r")$")
_LAYER_IN_PATH = re.compile(r"(?:^|\.)(?:layers|h)\.(\d+)(?:\.|$)")


@dataclass(frozen=True)
class Family:
    """Where a model family keeps its parts (paths relative to the causal-LM module)."""

    name: str
    layers: str  #: the ModuleList of blocks
    attn_out: str  #: in a block: the module whose output the attention adds to the residual
    mlp: str  #: in a block: the MLP (its input is the normalised MLP input)
    mlp_out: str  #: in a block: the module whose output the MLP adds to the residual
    mlp_down: str  #: in a block: the MLP's output projection (its input is mlp.hook_post)
    resid_mid: str | None  #: in a block: the module whose input is the mid residual
    final_norm: str
    norm_plus_one: bool = False  #: Gemma RMSNorm scales by (1 + weight)


FAMILIES: dict[str, Family] = {
    "llama": Family("llama", "model.layers", "self_attn", "mlp", "mlp", "mlp.down_proj",
                    "post_attention_layernorm", "model.norm"),
    "gemma": Family("gemma", "model.layers", "self_attn", "mlp", "mlp", "mlp.down_proj",
                    "post_attention_layernorm", "model.norm", norm_plus_one=True),
    "gemma2": Family("gemma2", "model.layers", "post_attention_layernorm", "mlp",
                     "post_feedforward_layernorm", "mlp.down_proj", "pre_feedforward_layernorm",
                     "model.norm", norm_plus_one=True),
    "gpt2": Family("gpt2", "transformer.h", "attn", "mlp", "mlp", "mlp.c_proj", "ln_2",
                   "transformer.ln_f"),
    "gpt_neox": Family("gpt_neox", "gpt_neox.layers", "attention", "mlp", "mlp",
                       "mlp.dense_4h_to_h", "post_attention_layernorm",
                       "gpt_neox.final_layer_norm"),
}


@dataclass(frozen=True)
class HookSite:
    """One place to read: ``module`` (a path in the model), its ``input`` or ``output``."""

    module: str
    where: str  #: "input" or "output"
    layer: int | None


def detect_family(model: torch.nn.Module) -> Family:
    """The :class:`Family` whose layout ``model`` has; raise if none matches."""
    modules = dict(model.named_modules())
    if "gpt_neox.layers" in modules:
        return FAMILIES["gpt_neox"]
    if "transformer.h" in modules:
        return FAMILIES["gpt2"]
    if "model.layers" in modules:
        model_type = str(getattr(model.config, "model_type", ""))
        if "model.layers.0.pre_feedforward_layernorm" in modules:
            return FAMILIES["gemma2"]
        return FAMILIES["gemma"] if model_type.startswith("gemma") else FAMILIES["llama"]
    raise FeaturelensError(
        f"featurelens does not know the module layout of {type(model).__name__}; use raw module "
        "paths as hookpoints (see model.named_modules()) or a Llama/GPT-2/GPT-NeoX/Gemma model."
    )


def tl_hookpoints(n_layers: int, family: Family) -> list[str]:
    """Every TransformerLens name the model accepts, block by block."""
    hooks = [h for h in BLOCK_HOOKS if family.resid_mid is not None or h != "hook_resid_mid"]
    return [f"blocks.{layer}.{hook}" for layer in range(n_layers) for hook in hooks]


def resolve(model: torch.nn.Module, family: Family, name: str, n_layers: int) -> HookSite:
    """The :class:`HookSite` of hookpoint ``name``; an unknown name lists valid ones."""
    match = _TL.match(name)
    if match:
        layer, hook = int(match[1]), match[2]
        if layer >= n_layers:
            raise FeaturelensError(
                f"Hookpoint {name!r} names layer {layer}, but the model has {n_layers} layers "
                f"(0-{n_layers - 1}); pick a layer in that range."
            )
        block = f"{family.layers}.{layer}"
        sites = {
            "hook_resid_pre": (block, "input"),
            "hook_resid_post": (block, "output"),
            "hook_attn_out": (f"{block}.{family.attn_out}", "output"),
            "hook_mlp_out": (f"{block}.{family.mlp_out}", "output"),
            "hook_mlp_in": (f"{block}.{family.mlp}", "input"),
            "ln2.hook_normalized": (f"{block}.{family.mlp}", "input"),
            "mlp.hook_post": (f"{block}.{family.mlp_down}", "input"),
        }
        if hook == "hook_resid_mid":
            if family.resid_mid is None or getattr(model.config, "use_parallel_residual", False):
                raise FeaturelensError(
                    f"Hookpoint {name!r} does not exist in this model: its attention and MLP read "
                    "the residual in parallel; use hook_resid_pre or hook_resid_post."
                )
            return HookSite(f"{block}.{family.resid_mid}", "input", layer)
        module, where = sites[hook]
        return HookSite(module, where, layer)
    modules = dict(model.named_modules())
    base_prefix = family.layers.split(".")[0]
    for candidate in (name, f"{base_prefix}.{name}"):
        if candidate and candidate in modules:
            found = _LAYER_IN_PATH.search(candidate)
            return HookSite(candidate, "output", int(found[1]) if found else None)
    examples = ", ".join(tl_hookpoints(1, family)[:8])
    raise FeaturelensError(
        f"Unknown hookpoint {name!r}; valid names are blocks.L.<hook> for L in 0-{n_layers - 1} "
        f"and <hook> one of {', '.join(BLOCK_HOOKS)} (e.g. {examples}), or a module path such as "
        f"{family.layers}.0.{family.mlp}."
    )


class StopForward(Exception):
    """Raised from a hook once every requested activation is read: ends the forward pass."""


_first_tensor = first_tensor  # the name the backend has always used


class Capture:
    """Forward hooks that read (and optionally replace) activations at hook sites.

    ``patch`` maps a site's activation to its replacement (used for logits with a
    dictionary's reconstruction spliced in). With ``stop=True`` the forward pass ends
    by :class:`StopForward` once every site has been read.
    """

    def __init__(self, model: torch.nn.Module, sites: dict[str, HookSite], *, stop: bool,
                 patch: Callable[[torch.Tensor], torch.Tensor] | None = None):
        self.model = model
        self.sites = sites
        self.stop = stop
        self.patch = patch
        self.captured: dict[str, torch.Tensor] = {}
        self._handles: list[Any] = []

    def __enter__(self) -> "Capture":
        modules = dict(self.model.named_modules())
        for name, site in self.sites.items():
            module = modules[site.module]
            if site.where == "input":
                handle = module.register_forward_pre_hook(self._pre_hook(name), with_kwargs=True)
            else:
                handle = module.register_forward_hook(self._post_hook(name))
            self._handles.append(handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _record(self, name: str, value: torch.Tensor) -> torch.Tensor:
        if self.patch is not None:
            value = self.patch(value)
        self.captured[name] = value
        if self.stop and len(self.captured) == len(self.sites):
            raise StopForward
        return value

    def _pre_hook(self, name: str) -> Callable[..., Any]:
        def hook(module: torch.nn.Module, args: tuple, kwargs: dict) -> Any:
            if args:
                new = self._record(name, _first_tensor(args[0]))
                return (new, *args[1:]), kwargs
            key = "hidden_states" if "hidden_states" in kwargs else next(
                k for k, v in kwargs.items() if isinstance(v, torch.Tensor))
            new = self._record(name, kwargs[key])
            return args, {**kwargs, key: new}
        return hook

    def _post_hook(self, name: str) -> Callable[..., Any]:
        def hook(module: torch.nn.Module, args: tuple, output: Any) -> Any:
            tensor = _first_tensor(output)
            new = self._record(name, tensor)
            return None if new is tensor else with_first_tensor(output, new)
        return hook


def in_base_model(sites: Sequence[HookSite], family: Family) -> bool:
    """True if every site lies inside the base model (so the LM head need not exist in the call)."""
    base = family.layers.split(".")[0] + "."
    return all(site.module.startswith(base) for site in sites)
