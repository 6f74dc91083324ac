"""Checks of provider options given on the command line (``--provider-option k=v``)."""

from __future__ import annotations

from featurelens.core.errors import FeaturelensError


def whole_option(provider: str, name: str, value: int | str, least: int = 1, example: int = 8) -> int:
    """A provider option that must be a whole number >= ``least``; otherwise one sentence."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = least - 1
    if number < least:
        raise FeaturelensError(f"The {provider} provider's {name} option must be a whole number >= {least}, "
                               f"not {value!r}; pass e.g. --provider-option {name}={example}.")
    return number
