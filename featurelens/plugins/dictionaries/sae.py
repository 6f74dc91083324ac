"""What every built-in sparse autoencoder and transcoder shares.

The parameters use SAELens's layout (``W_enc [d_in, d_sae]``, ``b_enc [d_sae]``,
``W_dec [d_sae, d_out]``, ``b_dec [d_out]``, optional ``W_skip [d_out, d_in]``) so
that saving to and loading from the common formats is a rename, never a reshuffle.
Subclasses choose the activation (:meth:`SparseAutoencoder.activate`) and the
sparsity penalty; the encoder, decoder, unit-norm upkeep, data-driven ``b_dec``
initialisation and the AuxK loss for dead features live here once.
"""

from __future__ import annotations

from typing import Any

import torch

from featurelens.core.dictionaries.base import Dictionary
from featurelens.core.errors import FeaturelensError
from featurelens.core.training.distributed import batch_variance


def encoder_matmul(x: torch.Tensor, w_enc: torch.Tensor, b_enc: torch.Tensor, fused_bias: bool) -> torch.Tensor:
    """``x @ W_enc + b_enc`` as the library that wrote the weights computes it.

    SAELens rounds the product, then adds the bias; sparsify calls ``F.linear``, which
    adds the bias inside the matmul and rounds once. In float32 the two differ by
    ~1e-6, in bfloat16 by a whole step on a quarter of the pre-activations, enough to
    change which features a TopK keeps (``config["fused_bias"]`` picks the second).
    """
    if fused_bias:
        return torch.nn.functional.linear(x, w_enc.T, b_enc)
    return x @ w_enc + b_enc


@torch.no_grad()
def geometric_median(points: torch.Tensor, iterations: int = 100, tol: float = 1e-6) -> torch.Tensor:
    """Weiszfeld's iteration: the point minimising the summed distance to ``points``.

    Used for ``b_dec`` because it is robust to the few huge-norm tokens (BOS,
    attention sinks) that pull the mean far from the bulk of the activations.
    """
    points = points.float()
    guess = points.mean(dim=0)
    for _ in range(iterations):
        distances = (points - guess).norm(dim=1).clamp_min(1e-8)
        weights = 1.0 / distances
        new = (weights[:, None] * points).sum(dim=0) / weights.sum()
        if (new - guess).norm() < tol * (1.0 + guess.norm()):
            return new
        guess = new
    return guess


class SparseAutoencoder(Dictionary):
    """An encoder, an activation, a linear decoder; trained by :meth:`loss`.

    ``apply_b_dec_to_input`` subtracts ``b_dec`` before encoding (SAEs; never
    transcoders, whose ``b_dec`` lives in the output space).
    ``rescale_acts_by_decoder_norm`` multiplies pre-activations by each decoder row's
    norm and divides them out again when decoding (SAELens's TopK convention), so
    features compare as if the decoder were unit-norm.
    """

    architecture = "sae"
    #: Keep decoder rows at unit norm during training (and remove the gradient
    #: component that would only change their norm).
    unit_norm_decoder = True

    def __init__(self, d_in: int, d_sae: int, *, d_out: int | None = None,
                 transcoder: bool = False, skip: bool = False,
                 apply_b_dec_to_input: bool | None = None,
                 rescale_acts_by_decoder_norm: bool = False,
                 aux_k: int | None = None, aux_coefficient: float = 1 / 32,
                 hookpoint: str | None = None, model_id: str | None = None,
                 **options: Any):
        _check_sizes(self.architecture, d_in, d_sae, d_out)
        if apply_b_dec_to_input is None:
            apply_b_dec_to_input = not transcoder
        if apply_b_dec_to_input and (d_out or d_in) != d_in:
            raise FeaturelensError(
                f"apply_b_dec_to_input needs d_out == d_in, but d_in is {d_in} and d_out {d_out}; "
                "set apply_b_dec_to_input=False for a transcoder."
            )
        config = {
            "transcoder": bool(transcoder), "skip": bool(skip),
            "apply_b_dec_to_input": bool(apply_b_dec_to_input),
            "rescale_acts_by_decoder_norm": bool(rescale_acts_by_decoder_norm),
            "aux_k": aux_k, "aux_coefficient": float(aux_coefficient),
        }
        if d_out is not None:
            config["d_out"] = int(d_out)
        config.update(options)
        super().__init__(d_in, d_sae, d_out=d_out, hookpoint=hookpoint, model_id=model_id,
                         config=config)
        self.apply_b_dec_to_input = bool(apply_b_dec_to_input)
        self.rescale_acts_by_decoder_norm = bool(rescale_acts_by_decoder_norm)
        self.aux_coefficient = float(aux_coefficient)
        self.aux_k = int(aux_k) if aux_k else max(1, self.d_out // 2)
        directions = torch.randn(d_sae, self.d_out)
        directions /= directions.norm(dim=1, keepdim=True)
        self.W_dec = torch.nn.Parameter(directions)
        # Tied initialisation (encoder = decoder transpose) when the shapes allow it:
        # features start as matched read/write pairs, which trains faster (OpenAI, 2024).
        if self.d_out == d_in:
            w_enc = directions.T.clone()
        else:
            w_enc = torch.randn(d_in, d_sae) / d_in**0.5
        self.W_enc = torch.nn.Parameter(w_enc.contiguous())
        self.b_enc = torch.nn.Parameter(torch.zeros(d_sae))
        self.b_dec = torch.nn.Parameter(torch.zeros(self.d_out))
        if skip:
            self.W_skip = torch.nn.Parameter(torch.zeros(self.d_out, d_in))
        else:
            self.W_skip = None

    # -- the forward path ------------------------------------------------------------
    def decoder_norms(self) -> torch.Tensor:
        return self.W_dec.norm(dim=1)

    def pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - b_dec?) @ W_enc + b_enc``, rescaled by decoder norms if configured."""
        x = x.to(self.W_enc.dtype)
        if self.apply_b_dec_to_input:
            x = x - self.b_dec
        hidden = encoder_matmul(x, self.W_enc, self.b_enc, bool(self.config.get("fused_bias")))
        if self.rescale_acts_by_decoder_norm:
            hidden = hidden * self.decoder_norms()
        return hidden

    def activate(self, hidden: torch.Tensor) -> torch.Tensor:
        """Feature activations from pre-activations (inference semantics)."""
        raise NotImplementedError

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        f = self.activate(self.pre_acts(x.reshape(-1, shape[-1])))
        return f.reshape(*shape[:-1], self.d_sae)

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        """``f @ W_dec + b_dec`` (without the skip path, which needs the input)."""
        f = f.to(self.W_dec.dtype)
        if self.rescale_acts_by_decoder_norm:
            f = f / self.decoder_norms()
        return f @ self.W_dec + self.b_dec

    def skip_out(self, x: torch.Tensor) -> torch.Tensor | None:
        if self.W_skip is None:
            return None
        return x.to(self.W_skip.dtype) @ self.W_skip.T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The full reconstruction of the output, skip connection included."""
        out = self.decode(self.encode(x))
        skip = self.skip_out(x)
        return out if skip is None else out + skip

    def decoder_directions(self) -> torch.Tensor:
        return self.W_dec.detach()

    # -- training -----------------------------------------------------------------
    def train_acts(self, hidden: torch.Tensor) -> torch.Tensor:
        """Activations used while training (differentiable); default: :meth:`activate`."""
        return self.activate(hidden)

    def sparsity_penalty(self, hidden: torch.Tensor, f: torch.Tensor) -> torch.Tensor | None:
        """Extra loss term that makes codes sparse (L1, L0...); ``None`` for TopK-style."""
        return None

    def loss(self, x: torch.Tensor, target: torch.Tensor | None = None,
             dead_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Reconstruction loss plus the sparsity penalty and the AuxK term.

        Returns ``loss`` (minimised), ``mse``, ``l0`` (mean active features per row),
        ``fired`` (bool ``[d_sae]``: which features were active in this batch) and the
        parts that make up ``loss``.
        """
        target = x if target is None else target
        hidden = self.pre_acts(x)
        f = self.train_acts(hidden)
        recon = self.decode(f)
        skip = self.skip_out(x)
        if skip is not None:
            recon = recon + skip
        target = target.to(recon.dtype)
        error = target - recon
        mse = error.pow(2).sum(dim=-1).mean()
        out = {"mse": mse.detach()}
        loss = mse
        penalty = self.sparsity_penalty(hidden, f)
        if penalty is not None:
            loss = loss + penalty
            out["sparsity"] = penalty.detach()
        active = f.detach() > 0
        if dead_mask is not None and self.aux_coefficient > 0 and bool(dead_mask.any()):
            aux = self.aux_loss(hidden, error.detach(), dead_mask)
            loss = loss + self.aux_coefficient * aux
            out["aux"] = aux.detach()
        out["loss"] = loss
        out["l0"] = active.sum(dim=-1).float().mean()
        out["fired"] = active.any(dim=0)
        out["variance"] = (target - target.mean(dim=0)).pow(2).sum(dim=-1).mean().detach()
        return out

    def aux_loss(self, hidden: torch.Tensor, residual: torch.Tensor,
                 dead_mask: torch.Tensor) -> torch.Tensor:
        """AuxK (Gao et al. 2024): the top dead latents must predict what the live ones
        missed; normalised by the residual's variance so its scale does not drift."""
        n_dead = int(dead_mask.sum())
        k = min(self.aux_k, n_dead)
        masked = hidden.masked_fill(~dead_mask[None, :], float("-inf"))
        values, indices = masked.topk(k, dim=-1, sorted=False)
        values = torch.relu(values)
        rows = self.W_dec[indices]  # [n, k, d_out]: only the chosen dead rows
        if self.rescale_acts_by_decoder_norm:
            values = values / self.decoder_norms()[indices]
        predicted = torch.einsum("nk,nkd->nd", values, rows)
        denom = batch_variance(residual).clamp_min(1e-12)  # whole global batch when data-parallel
        return (predicted - residual).pow(2).sum(dim=-1).mean() / denom

    @torch.no_grad()
    def initialize_from_data(self, x: torch.Tensor, target: torch.Tensor | None = None) -> None:
        """Set ``b_dec`` from a sample of the data before training.

        SAEs take the geometric median of the inputs; transcoders the mean of the
        targets (their bias is an output offset, and the mean minimises the MSE of a
        constant prediction).
        """
        if self.is_transcoder or target is not None:
            reference = (target if target is not None else x).float()
            self.b_dec.copy_(reference.mean(dim=0).to(self.b_dec.dtype))
        else:
            self.b_dec.copy_(geometric_median(x).to(self.b_dec.dtype))

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Put every decoder row back on the unit sphere (after an optimizer step)."""
        if self.unit_norm_decoder:
            self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8))

    @torch.no_grad()
    def project_decoder_grad(self) -> None:
        """Drop the gradient component parallel to each decoder row: with unit-norm rows
        it would only change their length, which :meth:`normalize_decoder` undoes."""
        grad = self.W_dec.grad
        if not self.unit_norm_decoder or grad is None:
            return
        w = self.W_dec
        parallel = (grad * w).sum(dim=1, keepdim=True) / w.pow(2).sum(dim=1, keepdim=True).clamp_min(1e-12)
        grad.sub_(parallel * w)

    def after_step(self) -> None:
        """Hook run after each optimizer step (unit norm, threshold clamping...)."""
        self.normalize_decoder()

    def extra_state_for_save(self) -> dict[str, torch.Tensor]:
        """Tensors besides the parameters that formats must keep (e.g. thresholds)."""
        return {}


def _check_sizes(architecture: str, d_in: Any, d_sae: Any, d_out: Any) -> None:
    for name, value in (("d_in", d_in), ("d_sae", d_sae), ("d_out", d_out)):
        if value is None and name == "d_out":
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise FeaturelensError(
                f"A {architecture} dictionary needs a positive integer {name}, got {value!r}; "
                "pass the activation width and the number of features as integers."
            )
