"""Feature edits spliced into a running model with forward hooks.

:class:`FeatureEditor` adds ``x_hat_edited - x_hat`` to the activation at the
dictionary's hookpoint (its output hookpoint for transcoders). Only the edited features'
terms are computed, ``sum_i (f_i' - f_i) * W_dec[i]``, which is exactly
``x - x_hat + x_hat_edited`` without ever forming the reconstruction: the error term is
kept whole, an empty edit installs no hook at all (outputs bit-identical), and an edit
that changes nothing at a position (ablating a silent feature) adds nothing there.

Positions are counted along the sequence, across cached generation steps: a hook on
the base model reads ``position_ids`` (or the cache length), so ``prompt`` and
``generated`` work with ``model.generate`` and its KV cache. The prompt is the first
forward call of a sequence unless ``prompt_length`` says otherwise. Note that the first
generated token is predicted at the last prompt position, so ``generated`` edits start
to matter from the second generated token.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator, Mapping

import torch

from featurelens.core.errors import FeaturelensError
from featurelens.core.host.protocols import ModelBackendBase, declared
from featurelens.core.model import hookpoints as hp
from featurelens.core.model.module_outputs import first_tensor, with_first_tensor
from featurelens.interventions.edits import Edit, check_positions, normalize_edits


def _model_and_resolver(model: Any) -> tuple[torch.nn.Module, Callable[[str], hp.HookSite]]:
    """(the transformers module, hookpoint name -> HookSite) for a backend or a bare model."""
    site, module = declared(model, "site", ModelBackendBase), declared(model, "model", ModelBackendBase)
    if callable(site) and isinstance(module, torch.nn.Module):
        return module, site
    if isinstance(model, torch.nn.Module) and hasattr(model, "config"):
        family = hp.detect_family(model)
        config = model.config
        n_layers = int(getattr(config, "num_hidden_layers", None) or config.n_layer)
        return model, lambda name: hp.resolve(model, family, name, n_layers)
    raise FeaturelensError(
        f"Cannot steer a {type(model).__name__}; pass a featurelens model backend or a transformers "
        "causal LM.")


def output_hookpoint(dictionary: Any, hookpoint: str | None = None) -> tuple[str, str]:
    """(where the dictionary reads, where its reconstruction is written)."""
    read = hookpoint or getattr(dictionary, "hookpoint", None)
    if not read:
        raise FeaturelensError(
            "The dictionary does not say which hookpoint it reads; pass hookpoint= (e.g. "
            "blocks.6.hook_resid_post).")
    if getattr(dictionary, "is_transcoder", False):
        write = dictionary.config.get("hookpoint_out")
        if not write:
            raise FeaturelensError(
                "This transcoder does not record its output hookpoint (hookpoint_out); set "
                "dictionary.config['hookpoint_out'], e.g. blocks.6.hook_mlp_out.")
        return read, str(write)
    return read, read


class _Terms:
    """Per edited feature: its write rows and how to read its activation cheaply."""

    def __init__(self, dictionary: Any, edits: list[Edit], device: torch.device):
        self.dictionary = dictionary
        self.edits = edits
        index = torch.tensor([e.feature for e in edits], dtype=torch.long)
        self.index = index.to(device)
        arch = getattr(dictionary, "architecture", "")
        self.identity = arch == "identity"
        directions = None if self.identity else dictionary.decoder_directions()
        dtype = torch.float32
        if self.identity:
            rows = torch.zeros(len(edits), dictionary.d_out)
            rows[torch.arange(len(edits)), index] = 1.0
            self.direction_rows = rows.to(device, dtype)
        else:
            self.direction_rows = directions[index.to(directions.device)].detach().to(device, dtype)
        # The rows a change of the *feature activation* writes (TopK-style rescaling divides it out).
        self.feature_rows = self.direction_rows.clone()
        self.gain: torch.Tensor | None = torch.ones(len(edits), device=device) if self.identity else None
        self.encoder: tuple[torch.Tensor, ...] | None = None
        if hasattr(dictionary, "W_enc") and hasattr(dictionary, "W_dec") and not self.identity:
            w_dec = dictionary.W_dec.detach()[index.to(dictionary.W_dec.device)].to(device, dtype)
            w_enc = dictionary.W_enc.detach()[:, index.to(dictionary.W_enc.device)].to(device, dtype)
            rescale = bool(getattr(dictionary, "rescale_acts_by_decoder_norm", False))
            norms = w_dec.norm(dim=1)
            self.feature_rows = w_dec / norms[:, None] if rescale else w_dec
            # Same space in and out: a clamp is solved so that re-encoding reads the target.
            # A transcoder writes elsewhere, so its clamp sets the decoded contribution instead.
            if not getattr(dictionary, "is_transcoder", False):
                self.gain = (w_dec * w_enc.T).sum(dim=1)
                b_dec = dictionary.b_dec.detach().to(device, dtype) \
                    if getattr(dictionary, "apply_b_dec_to_input", False) else None
                b_enc = dictionary.b_enc.detach()[index.to(dictionary.b_enc.device)].to(device, dtype)
                self.encoder = (w_enc, b_enc, b_dec, norms if rescale else None)
        mode = [e.mode for e in edits]
        self.add_mask = torch.tensor([m == "add" for m in mode], device=device)
        self.set_mask = ~self.add_mask
        self.values = torch.tensor([float(e.value) for e in edits], device=device, dtype=dtype)
        self.targets = torch.tensor([e.target for e in edits], device=device, dtype=dtype)
        self.needs_reading = bool(self.set_mask.any())

    def read(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(activations ``[n, m]`` of the edited features, their pre-activations or None)."""
        if self.identity:
            pre = x[:, self.index]
            return torch.relu(pre), pre
        acts = self.dictionary.encode(x.to(next(self.dictionary.parameters()).dtype))
        f = acts[:, self.index].float()
        if self.encoder is None:
            return f, None
        w_enc, b_enc, b_dec, norms = self.encoder
        inp = x if b_dec is None else x - b_dec
        pre = inp @ w_enc + b_enc
        if norms is not None:
            pre = pre * norms
        return f, pre

    def coefficients(self, x: torch.Tensor | None, n: int, device: torch.device) -> torch.Tensor:
        """``[n, m]``: how much of each feature row to add at each of ``n`` positions."""
        coef = torch.zeros(n, len(self.edits), device=device)
        coef[:, self.add_mask] = self.values[self.add_mask]
        if not self.needs_reading:
            return coef
        assert x is not None
        f, pre = self.read(x.float())
        set_cols = self.set_mask
        target = self.targets[set_cols]
        f_set = f[:, set_cols]
        change = target - f_set  # plain decoded change, used where no read-back solve exists
        if pre is not None and self.gain is not None:
            gain = self.gain[set_cols]
            solvable = gain.abs() > 1e-6
            solved = (target - pre[:, set_cols]) / torch.where(solvable, gain, torch.ones_like(gain))
            change = torch.where(solvable[None, :], solved, change)
        untouched = f_set == target  # already reads the target (a silent feature being ablated)
        coef[:, set_cols] = torch.where(untouched, torch.zeros_like(change), change)
        return coef

    def delta(self, coef: torch.Tensor) -> torch.Tensor:
        rows = torch.where(self.add_mask[:, None], self.direction_rows, self.feature_rows)
        return coef @ rows


class FeatureEditor:
    """Forward hooks that apply ``edits`` of ``dictionary`` to ``model`` while entered.

    :param model: a featurelens model backend (``hf``) or a transformers causal LM.
    :param dictionary: a loaded :class:`~featurelens.core.dictionaries.base.Dictionary`.
    :param edits: ``{feature: strength}`` (add), or see
        :func:`~featurelens.interventions.edits.normalize_edits`.
    :param positions: ``all``, ``prompt``, ``generated``, or a tuple of token positions
        (counted along the sequence, as ``position_ids`` are).
    :param prompt_length: tokens of prompt; default: the first forward call of each sequence.

    A transcoder set (:mod:`featurelens.core.transcoder_set`) is edited through one
    editor per layer its edited features belong to.
    """

    def __init__(self, model: Any, dictionary: Any, edits: Mapping[int, Any] | Any, *,
                 positions: str | tuple[int, ...] = "all", prompt_length: int | None = None,
                 hookpoint: str | None = None):
        self.module, resolve = _model_and_resolver(model)
        self.dictionary = dictionary
        self.edits = normalize_edits(edits)
        self.positions = check_positions(positions)
        self.fixed_prompt_length = prompt_length
        self.prompt_length: int | None = prompt_length
        for edit in self.edits:
            if edit.feature >= dictionary.d_sae:
                raise FeaturelensError(
                    f"Feature {edit.feature} is out of range: the dictionary has {dictionary.d_sae} "
                    f"features (0-{dictionary.d_sae - 1}); pick one in that range.")
        self._positions: torch.Tensor | None = None
        self._pending: torch.Tensor | None = None  # transcoders: coefficients read at the input
        self._handles: list[Any] = []
        self.parts: list[FeatureEditor] = []
        if hasattr(dictionary, "encode_sparse_layers"):  # a transcoder set: one editor per layer edited
            self.parts = _set_parts(model, dictionary, self.edits, self.positions, prompt_length)
            self.terms = None
            return
        self.read_hookpoint, self.write_hookpoint = output_hookpoint(dictionary, hookpoint)
        self.read_site = resolve(self.read_hookpoint)
        self.write_site = resolve(self.write_hookpoint)
        device = next(self.module.parameters()).device
        self.terms = _Terms(dictionary, self.edits, device) if self.edits else None
        if self.terms is not None and self.terms.needs_reading and not self.terms.identity:
            dictionary.to(device)

    # -- positions ----------------------------------------------------------------------
    def _track(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        embeds = kwargs.get("inputs_embeds")
        source = ids if ids is not None else embeds
        if source is None:
            return
        batch, length = int(source.shape[0]), int(source.shape[1])
        position_ids = kwargs.get("position_ids")
        if position_ids is not None:
            positions = position_ids.expand(batch, -1)
        else:
            cache = kwargs.get("cache", kwargs.get("past_key_values"))
            offset = int(cache.get_seq_length()) if cache is not None and hasattr(cache, "get_seq_length") else 0
            positions = (torch.arange(length, device=source.device) + offset).expand(batch, -1)
        if int(positions.min()) == 0 and self.fixed_prompt_length is None:
            self.prompt_length = length
        self._positions = positions

    def _mask(self, batch: int, length: int, device: torch.device) -> torch.Tensor | None:
        """Bool ``[batch, length]`` of the positions to edit, or None for all of them."""
        if self.positions == "all":
            return None
        positions = self._positions
        if positions is None or tuple(positions.shape) != (batch, length):
            positions = torch.arange(length, device=device).expand(batch, -1)
        positions = positions.to(device)
        if isinstance(self.positions, tuple):
            return torch.isin(positions, torch.tensor(self.positions, device=device))
        cut = self.prompt_length if self.prompt_length is not None else length
        return positions < cut if self.positions == "prompt" else positions >= cut

    # -- the edit --------------------------------------------------------------------------
    def _coefficients(self, x: torch.Tensor) -> torch.Tensor | None:
        """``[batch, seq, m]`` coefficients at ``x``'s positions, or None if nothing changes."""
        assert self.terms is not None
        batch, length = x.shape[0], x.shape[1] if x.dim() == 3 else 1
        flat = x.reshape(-1, x.shape[-1])
        coef = self.terms.coefficients(flat if self.terms.needs_reading else None, flat.shape[0], x.device)
        coef = coef.reshape(batch, length, -1)
        mask = self._mask(batch, length, x.device)
        if mask is not None:
            coef = coef * mask[..., None]
        return coef if bool(coef.any()) else None

    def _apply(self, x: torch.Tensor, coef: torch.Tensor | None) -> torch.Tensor:
        if coef is None:
            return x
        assert self.terms is not None
        delta = self.terms.delta(coef.reshape(-1, coef.shape[-1])).reshape(*x.shape[:-1], -1)
        edited = x + delta.to(x.dtype)
        if not bool(torch.isfinite(edited).all()):
            # Sampling would fail on NaN probabilities, and greedy decoding would silently
            # pick token 0: say what happened instead.
            raise FeaturelensError(
                f"The edit ({', '.join(e.describe() for e in self.edits)}) pushes the activations past "
                f"what {str(x.dtype).removeprefix('torch.')} can hold (inf or NaN); use a smaller strength.")
        return edited

    def _read_then_write(self, x: torch.Tensor) -> torch.Tensor:
        return self._apply(x, self._coefficients(x))

    def _read_only(self, x: torch.Tensor) -> torch.Tensor:
        self._pending = self._coefficients(x)
        return x

    def _write_pending(self, x: torch.Tensor) -> torch.Tensor:
        coef, self._pending = self._pending, None
        if coef is not None and coef.shape[:2] != x.shape[:2]:
            raise FeaturelensError("The transcoder's input and output hookpoints saw different token "
                                   "counts; pick hookpoints of the same forward pass.")
        return self._apply(x, coef)

    # -- hooks -------------------------------------------------------------------------------
    def _hook(self, site: hp.HookSite, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self._handles.append(attach(self.module, site, fn))

    def __enter__(self) -> "FeatureEditor":
        for part in self.parts:
            part.__enter__()
        if self.terms is None:
            return self  # an empty edit touches nothing: outputs stay bit-identical
        base = getattr(self.module, "base_model", None) or self.module
        self._handles.append(base.register_forward_pre_hook(self._track, with_kwargs=True))
        transcoder = self.read_hookpoint != self.write_hookpoint
        if transcoder and self.terms.needs_reading:
            self._hook(self.read_site, self._read_only)
            self._hook(self.write_site, self._write_pending)
        elif transcoder:
            self._hook(self.write_site, self._read_then_write)
        else:
            self._hook(self.read_site, self._read_then_write)
        return self

    def __exit__(self, *exc: object) -> None:
        for part in reversed(self.parts):
            part.__exit__(*exc)
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._positions = None
        self._pending = None
        self.prompt_length = self.fixed_prompt_length


def attach(root: torch.nn.Module, site: hp.HookSite, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """A hook that passes the activation at ``site`` through ``fn``; returns its handle."""
    module = dict(root.named_modules())[site.module]
    if site.where == "input":
        def pre(module: torch.nn.Module, args: tuple, kwargs: dict) -> Any:
            if args:
                new = fn(first_tensor(args[0]))
                return (new, *args[1:]), kwargs
            key = "hidden_states" if "hidden_states" in kwargs else next(
                k for k, v in kwargs.items() if isinstance(v, torch.Tensor))
            return args, {**kwargs, key: fn(kwargs[key])}
        return module.register_forward_pre_hook(pre, with_kwargs=True)

    def post(module: torch.nn.Module, args: tuple, output: Any) -> Any:
        tensor = first_tensor(output)
        new = fn(tensor)
        return None if new is tensor else with_first_tensor(output, new)
    return module.register_forward_hook(post)


def _set_parts(model: Any, tset: Any, edits: list[Edit], positions: str | tuple[int, ...],
               prompt_length: int | None) -> list["FeatureEditor"]:
    """A transcoder set's edits as one editor per layer: feature ``offset(L) + i`` of the set is
    feature ``i`` of layer ``L``'s transcoder, read at its MLP input, written to its MLP output."""
    if getattr(tset, "cross", None):
        raise FeaturelensError("This transcoder set is cross-layer: its features write to every later layer, "
                               "which a per-layer edit does not carry; steer a per-layer set.")
    by_layer: dict[int, list[Edit]] = {}
    for edit in edits:
        layer, local = tset.locate(edit.feature)
        by_layer.setdefault(layer, []).append(Edit(local, edit.mode, edit.value))
    return [FeatureEditor(model, tset.transcoder(layer), local_edits, positions=positions,
                          prompt_length=prompt_length, hookpoint=tset.layout.hookpoint_in(layer))
            for layer, local_edits in sorted(by_layer.items())]


@contextmanager
def steering(model: Any, dictionary: Any, edits: Mapping[int, Any] | Any, *, positions: str = "all",
             prompt_length: int | None = None, hookpoint: str | None = None) -> Iterator[FeatureEditor]:
    """``with featurelens.steering(model, dictionary, {123: 8.0}): model.generate(...)``.

    Every forward pass of ``model`` inside the block runs with the edits (see
    :class:`FeatureEditor` for the arguments); leaving the block removes them.
    """
    editor = FeatureEditor(model, dictionary, edits, positions=positions,
                           prompt_length=prompt_length, hookpoint=hookpoint)
    with editor:
        yield editor
