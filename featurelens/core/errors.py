"""User-facing errors.

Every problem a user can cause (bad input, a missing file, a locked store) is raised as
a :class:`FeaturelensError` whose message is one sentence naming the problem and the
fix. The CLI prints that sentence alone, without a traceback, and exits non-zero.
"""

from __future__ import annotations


class FeaturelensError(Exception):
    """A problem the user can fix; ``str(error)`` says what it is and how."""


class PluginError(FeaturelensError):
    """A plugin could not be loaded, registered, or collides with another plugin."""


class StoreError(FeaturelensError):
    """The feature store cannot be opened, migrated or queried."""


class UnknownComponentError(FeaturelensError):
    """A name (``hf``, ``topk``, ``openai:gpt-4o-mini``) resolves to no registered component."""
