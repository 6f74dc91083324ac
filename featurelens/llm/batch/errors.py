"""A batch API call that failed, as one sentence without the key.

Live requests go through the engine, whose retry policy turns every SDK error into a
reason. Batch submission, status and download call the SDK directly, so an error
there (a rejected key, a 4xx, a dead server) would otherwise surface as the SDK's
traceback, whose message may echo the request's key. Batches already recorded stay
recorded: the same command resumes after the last one.
"""

from __future__ import annotations

from typing import Any

from featurelens.core.errors import FeaturelensError
from featurelens.core.host.protocols import LLMProviderBase, declared
from featurelens.core.redaction import redact
from featurelens.llm.retry import describe, http_status


def batch_failure(error: BaseException, provider: Any, doing: str) -> FeaturelensError:
    """``error`` (raised by a provider's batch client while ``doing``) as a FeaturelensError."""
    if isinstance(error, FeaturelensError):
        return FeaturelensError(redact(str(error)))
    spec = f"{getattr(provider, 'name', '?')}:{getattr(provider, 'model', '?')}"
    status = http_status(error)
    if status in (401, 403):
        variable = declared(provider, "key_env", LLMProviderBase) or "the provider's API key variable"
        return FeaturelensError(f"{spec} rejected the API key while {doing} (HTTP {status}); set a valid key "
                                f"in {variable} and run the same command again.")
    return FeaturelensError(f"{spec}'s batch API failed while {doing} ({redact(describe(error))}); run the "
                            "same command again: what was already recorded is kept.")
