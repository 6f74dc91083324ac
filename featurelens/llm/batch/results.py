"""A provider batch's results, read as untrusted data.

A result file can hold lines that are not JSON (a truncated download), lines naming
no request, answers for requests this batch never held, or the same request twice.
Each readable answer for one of the batch's own requests is kept once (the first);
everything else is counted and reported, never cached: an answer under a key the
batch did not ask for would be served later as the answer to a different request.
Requests left without an answer become error calls whose reason says why, so the
run's finisher records them as failures that a rerun asks again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from featurelens.core.host.protocols import LLMResponse

#: The custom_id given to a result line that names no request.
UNREADABLE = ""

Result = tuple[str, "LLMResponse | None", "str | None"]


def read_jsonl(text: str, answer: Callable[[dict[str, Any]], tuple[LLMResponse | None, str | None]]
               ) -> Iterator[Result]:
    """``(custom_id, response, error)`` per line of a JSONL result file; ``answer`` reads
    one item, and whatever it raises makes that request's error, not the file's."""
    for number, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            item = json.loads(raw)
        except json.JSONDecodeError:
            yield UNREADABLE, None, f"result line {number} is not JSON"
            continue
        custom_id = item.get("custom_id") if isinstance(item, dict) else None
        if not isinstance(custom_id, str) or not custom_id:
            yield UNREADABLE, None, f"result line {number} names no custom_id"
            continue
        try:
            response, error = answer(item)
        except Exception as problem:  # noqa: BLE001 - any malformed answer fails only its request
            response, error = None, f"its answer could not be read ({type(problem).__name__}: {str(problem)[:200]})"
        yield custom_id, response, error


@dataclass
class SortedResults:
    """The first result for each of the batch's requests, and what was set aside."""

    answers: dict[str, tuple[LLMResponse | None, str | None]] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)
    unknown: int = 0
    duplicates: int = 0

    def note(self) -> str:
        """What was set aside, as a clause for the collect line ('' when nothing was)."""
        parts = []
        if self.unreadable:
            parts.append(f"{len(self.unreadable):,} result line(s) could not be read ({self.unreadable[0]})")
        if self.unknown:
            parts.append(f"{self.unknown:,} answer(s) for requests not in this batch were ignored")
        if self.duplicates:
            parts.append(f"{self.duplicates:,} repeated answer(s) were ignored (the first was kept)")
        return "; ".join(parts)


def sort_results(items: Iterable[Result], requests: dict[str, Any]) -> SortedResults:
    """Keep the first result for each custom_id in ``requests``; count the rest."""
    out = SortedResults()
    for custom_id, response, error in items:
        if custom_id == UNREADABLE:
            out.unreadable.append(error or "unreadable")
        elif custom_id not in requests:
            out.unknown += 1
        elif custom_id in out.answers:
            out.duplicates += 1
        else:
            out.answers[custom_id] = (response, error)
    return out


def unanswered_reason(status: str, provider_reason: str, sorted_results: SortedResults) -> str:
    """Why a request of a finished batch has no result line."""
    reason = f"the batch ended '{status}' without an answer for it"
    if provider_reason:
        reason += f" ({provider_reason})"
    if sorted_results.unreadable:
        reason += f"; {len(sorted_results.unreadable):,} result line(s) could not be read"
    return reason
