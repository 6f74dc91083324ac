"""Retries without the production backoff, for tests that count attempts, not seconds.

The CLI builds ``RetryPolicy(max_attempts=...)`` with a 1 s base: each retried request of a
fault test slept half a second on average. Every retry still happens, in milliseconds."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from featurelens.llm import retry


@dataclass
class QuickRetries(retry.RetryPolicy):
    base_s: float = 0.01
    cap_s: float = 0.05


@pytest.fixture
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retry, "RetryPolicy", QuickRetries)
