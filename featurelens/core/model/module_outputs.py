"""Reading the activation tensor out of whatever a torch module returns.

Shared by the model backend (reading hookpoints) and interventions (editing them), so
both agree on which tensor a hookpoint is.
"""

from __future__ import annotations

from typing import Any

import torch

from featurelens.core.errors import FeaturelensError


def first_tensor(value: Any) -> torch.Tensor:
    """The hidden states in a module's output: the tensor, a tuple's first item, or
    ``last_hidden_state``; anything else is one sentence naming what was found."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], torch.Tensor):
        return value[0]
    if hasattr(value, "last_hidden_state"):
        return value.last_hidden_state
    raise FeaturelensError(
        f"The module output at this hookpoint is a {type(value).__name__}, not an activation "
        "tensor; pick a module that outputs hidden states."
    )


def with_first_tensor(output: Any, new: torch.Tensor) -> Any:
    """``output`` with the tensor :func:`first_tensor` found replaced by ``new``, in the
    same container, so a forward hook can hand back an edited output of any shape."""
    if isinstance(output, tuple):
        return (new, *output[1:])
    if isinstance(output, list):
        return [new, *output[1:]]
    if not isinstance(output, torch.Tensor) and hasattr(output, "last_hidden_state"):
        output.last_hidden_state = new
        return output
    return new
