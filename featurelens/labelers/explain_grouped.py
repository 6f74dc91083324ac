"""Several features explained in one request (explainer option ``features_per_request``).

Every explanation request repeats the same instructions and few-shot turns; when that
prefix is too short for the provider's prompt cache (see
:mod:`featurelens.llm.prompt_cache`) it is paid in full each time. Putting ``k``
features in one request pays it once for ``k`` features. The request is the explainer's
own prefix, with one rule added to the system turn (so the prefix stays identical
across requests), then one user turn holding each feature's usual block under a
``Feature N:`` line. The answer is one ``N: explanation`` line per feature; each line
is read by the explainer's own parser, so a missing or unusable line fails only its
feature (a ``failures`` row each), and a failed request, or an answer with no usable
line, fails every feature in it (a group of one included: its feature counts as failed,
never as done).

``k`` is bounded by the output the request may need: ``k`` times the explainer's
``max_tokens`` must fit :data:`MAX_OUTPUT_TOKENS`.
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterator

from featurelens.core.errors import FeaturelensError
from featurelens.core.host.protocols import (
    Explainer,
    FeatureRecord,
    LLMRequest,
    LLMResponse,
    ParseError,
)
from featurelens.llm.engine import Job

OPTION = "features_per_request"
#: The smallest output limit among current small hosted models (Claude Haiku 3: 4,096).
MAX_OUTPUT_TOKENS = 4096
GROUP_RULE = (
    "You may get several features at once, each introduced by a line 'Feature N:' and followed "
    "by its examples. Then answer with one line per feature, in order, written as 'N: ' and that "
    "feature's explanation, and nothing else."
)
_LINE = re.compile(r"^\s*(?:feature\s*)?(\d+)\s*[:.)]\s*(.+?)\s*$", re.IGNORECASE)


def per_request(options: dict[str, Any], explainer_max_tokens: int | None = None) -> int:
    """The ``features_per_request`` option, checked (1 when absent)."""
    value = options.get(OPTION, 1)
    try:
        k = int(value) if not isinstance(value, bool) and float(value) == int(value) else 0  # 2.5 is not 2
    except (TypeError, ValueError, OverflowError):
        k = 0
    if k < 1 or k > 64:
        raise FeaturelensError(f"Explainer option {OPTION}={value!r} must be a whole number from 1 to 64; "
                               f"fix --option {OPTION}=N.")
    if explainer_max_tokens and k * explainer_max_tokens > MAX_OUTPUT_TOKENS:
        raise FeaturelensError(
            f"{OPTION}={k} needs up to {k * explainer_max_tokens:,} output tokens ({explainer_max_tokens} "
            f"each), more than the {MAX_OUTPUT_TOKENS:,} a request may ask for; use at most "
            f"{MAX_OUTPUT_TOKENS // explainer_max_tokens}.")
    return k


def grouped_request(explainer: Explainer, records: list[FeatureRecord]) -> LLMRequest:
    """One request explaining every record (each must have a request of its own)."""
    singles = [explainer.requests(record)[0] for record in records]
    first = singles[0]
    prefix = [dict(m) for m in first.messages[:first.shared_prefix]]
    prefix[0]["content"] = f"{prefix[0]['content']}\n\n{GROUP_RULE}"
    blocks = [f"Feature {i}:\n{single.messages[-1]['content']}" for i, single in enumerate(singles, 1)]
    return LLMRequest(messages=prefix + [{"role": "user", "content": "\n\n".join(blocks)}],
                      max_tokens=sum(s.max_tokens for s in singles) + 4 * len(singles),
                      temperature=first.temperature, shared_prefix=len(prefix), purpose="explain")


def split_answer(text: str, n: int) -> dict[int, str]:
    """``{feature number: its line}`` from a grouped answer (numbers outside 1..n ignored)."""
    found: dict[int, str] = {}
    for line in (text or "").splitlines():
        match = _LINE.match(line)
        if match and 1 <= int(match.group(1)) <= n and int(match.group(1)) not in found:
            found[int(match.group(1))] = match.group(2)
    return found


def grouped_job(explainer: Explainer, spec: Any, records: list[FeatureRecord], ids: list[str],
                run_id: str | None, max_chars: int) -> Job:
    """A job explaining ``records`` in one request; rows and failures per feature."""
    request = grouped_request(explainer, records)
    options = json.dumps(spec.options, sort_keys=True, default=str)

    def finish(responses: list[LLMResponse | None]) -> dict[str, list[dict[str, Any]]]:
        rows: dict[str, list[dict[str, Any]]] = {"explanations": [], "failures": []}
        response = responses[0] if responses else None
        lines = split_answer(response.text, len(records)) if response is not None else {}
        if response is not None and not lines:  # not one usable line: the answer is at fault,
            raise ParseError(  # so the engine fails every feature and asks again next run
                f"the answer has no 'N: explanation' line for any of its {len(records)} features")
        for number, (record, eid) in enumerate(zip(records, ids, strict=True), 1):
            try:
                if response is None:
                    raise ParseError("the grouped request failed (see llm_calls for the reason)")
                if number not in lines:
                    raise ParseError(f"the answer has no line '{number}: ...' for this feature")
                text = " ".join(explainer.parse(record, [LLMResponse(text=lines[number])]).split())
                if not text:
                    raise ParseError("the explanation is empty")
            except ParseError as error:
                rows["failures"].append({"run_id": run_id, "stage": "explain", "dictionary_id": record.dictionary_id,
                                         "feature": record.feature, "method": spec.method,
                                         "reason": f"unusable answer: {error}"[:2000]})
                continue
            rows["explanations"].append({
                "explanation_id": eid, "dictionary_id": record.dictionary_id, "feature": record.feature,
                "explainer": spec.explainer, "llm": spec.llm, "text": text[:max_chars], "options": options,
                "run_id": run_id})
        if not rows["explanations"]:  # nothing usable: the job failed (each member counted as
            # failed, none resolved, the answer out of the cache so a rerun asks again)
            raise ParseError(rows["failures"][0]["reason"].removeprefix("unusable answer: "))
        return rows

    # require_all: the one request failed for good, so every member failed (a success is
    # never counted, nor a failure resolved, for a group whose request was not answered)
    return Job(records[0].dictionary_id, records[0].feature, "explain", [request], finish, require_all=True,
               method=spec.method, features=len(records),
               members=tuple((r.dictionary_id, r.feature) for r in records))


def group_jobs(jobs: Iterator[tuple[FeatureRecord, str]], explainer: Explainer, spec: Any, k: int,
               run_id: str | None, max_chars: int) -> Iterator[Job]:
    """Grouped jobs of ``k`` features from ``(record, explanation id)`` pairs."""
    group: list[tuple[FeatureRecord, str]] = []
    for pair in jobs:
        group.append(pair)
        if len(group) == k:
            yield grouped_job(explainer, spec, [r for r, _ in group], [i for _, i in group], run_id, max_chars)
            group = []
    if group:
        yield grouped_job(explainer, spec, [r for r, _ in group], [i for _, i in group], run_id, max_chars)
