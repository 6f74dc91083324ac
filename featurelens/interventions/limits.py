"""How long a steered generation may be: the model's context, checked before it runs.

Past its context (the backend's ``max_context``, read from the model's config) a model has
no positions left: transformers only warns, then every further token costs a forward over
an ever longer prompt (a 100,000-character prompt held ``steer`` and the serve lock for
minutes), and rotary models drift into noise.
"""

from __future__ import annotations

from typing import Any

from featurelens.core.errors import FeaturelensError
from featurelens.core.host.protocols import ModelBackendBase, declared


def check_length(backend: Any, prompt_tokens: int, max_tokens: int) -> None:
    """One sentence when the prompt plus the tokens to generate do not fit the model."""
    limit = declared(backend, "max_context", ModelBackendBase)  # the backend read it from the model's config
    if limit is not None and prompt_tokens + max_tokens > limit:
        raise FeaturelensError(
            f"The prompt is {prompt_tokens} tokens and {max_tokens} more are asked for, but the model "
            f"reads at most {limit} positions; shorten the prompt or ask for fewer tokens.")
