"""A component built from ``KEY=VALUE`` options that refused them, as one sentence.

Options arrive from the command line as text (``-s window=abc``); a factory refuses an
option it does not know with ``TypeError: ... unexpected keyword argument``, and a value
it cannot use with some other ``TypeError`` or ``ValueError`` raised while it compares or
converts it. The two need different fixes, so they get different sentences.
"""

from __future__ import annotations

from typing import Any, Mapping

from featurelens.core.errors import FeaturelensError


def unknown_option(error: BaseException) -> bool:
    """Whether ``error`` says the factory does not take an option at all."""
    return isinstance(error, TypeError) and "argument" in str(error)


def bad_value(kind: str, name: str, options: Mapping[str, Any], error: BaseException) -> FeaturelensError:
    """The error for an option value the component could not use."""
    given = ", ".join(f"{key}={value!r}" for key, value in sorted(options.items()))
    return FeaturelensError(f"The {kind} {name!r} cannot use the option value(s) {given} ({type(error).__name__}: "
                            f"{error}); give each option a value of the kind it takes, e.g. window=16 or adaptive=true.")
