"""How the host reads a component's optional members: always through :func:`declared`,
which takes the default from the base class that declares it, so a member the host reads
and the contract leaves out cannot exist."""

from __future__ import annotations

from typing import Any


def declared(component: Any, name: str, base: type) -> Any:
    """``component.name``, or the default ``base`` declares for it.

    The host reads optional members only through here: asking for a member ``base``
    does not declare is a bug in the host (AttributeError), never a silent default.
    """
    default = base.__dict__[name] if name in base.__dict__ else getattr(base, name)
    return getattr(component, name, default)
