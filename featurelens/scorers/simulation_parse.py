"""Reading a simulator's predictions out of the three kinds of answer.

- prompt log-probabilities (all at once): the expected value over "0".."10" at each
  placeholder (``?``, or ``unknown`` in OpenAI's layout) that follows a tab, in prompt order;
- output log-probabilities: the integers the model wrote, one line per example, each
  replaced by the expected value of the digits at its position when available;
- JSON: the integers the model wrote.

An example whose predictions cannot be read (missing, wrong length, not numbers) is a
parse failure: it is left out of the correlation and counted, never filled with zeros.
"""

from __future__ import annotations

import json
import math
import re

from featurelens.core.host.protocols import LLMResponse, ParseError, TokenLogprobs
from featurelens.scorers.prompts import UNKNOWN

#: A prediction per example, or the reason it could not be read.
Predictions = list["list[float] | ParseError"]


def expected_value(top: dict[str, float]) -> float | None:
    """Mean of the integers 0-10 under the renormalised probabilities in ``top``."""
    mass = 0.0
    total = 0.0
    for token, logprob in top.items():
        text = token.strip()
        if text.isdigit() and str(int(text)) == text and int(text) <= 10 and logprob is not None:
            p = math.exp(logprob)
            mass += p
            total += p * int(text)
    return total / mass if mass > 0 else None


def target_positions(tokens: list[TokenLogprobs], placeholder: str = UNKNOWN) -> list[int]:
    """Indices whose distribution predicts the value after each ``<TAB>placeholder``.

    Found by walking the tokens, not by character offsets: byte-level tokens of a
    multi-byte character do not decode one by one, so offsets drift, but a tab is one
    ASCII byte and only our separators contain one (corpus tabs are neutralised). After
    a token that ends with the tab, the next token starts the value; a token that
    merges the tab with the start of the placeholder is itself the position (its
    alternatives then carry the tab, which :func:`expected_value` strips). The
    placeholder may be split into several tokens, or merged with the newline after it
    (``?\n``); only its first position matters.
    """
    positions = []
    n = len(tokens)
    for i, item in enumerate(tokens):
        text = item.token
        tab = text.rfind("\t")
        if tab == -1:
            continue
        rest = text[tab + 1:]
        if rest:
            if placeholder.startswith(rest) or rest.startswith(placeholder):
                following = rest + "".join(t.token for t in tokens[i + 1:i + 1 + len(placeholder)])
                if following.startswith(placeholder):
                    positions.append(i)
            continue
        following = "".join(t.token for t in tokens[i + 1:i + 1 + len(placeholder)])
        if i + 1 < n and following.startswith(placeholder):
            positions.append(i + 1)
    return positions


def from_prompt_logprobs(response: LLMResponse, lengths: list[int],
                         placeholder: str = UNKNOWN) -> tuple[Predictions, int]:
    """Expected values at every target position; also how many positions had no digits."""
    tokens = response.prompt_logprobs
    positions = target_positions(tokens, placeholder)
    expected = sum(lengths)
    if len(positions) != expected:
        error = ParseError(f"the prompt log-probs hold {len(positions)} target positions, not {expected}")
        return [error for _ in lengths], 0
    values: list[float] = []
    missing = 0
    for i in positions:
        value = expected_value(tokens[i].top)
        if value is None:
            missing += 1
            value = 0.0
        values.append(value)
    out: Predictions = []
    start = 0
    for n in lengths:
        out.append(values[start:start + n])
        start += n
    return out, missing


_LINE = re.compile(r"^\s*(?:example\s*)?(\d+)\s*[:.)\]-]\s*(.*)$", re.IGNORECASE)
_INT = re.compile(r"-?\d+(?:\.\d+)?")


def _offsets(logprobs: list[TokenLogprobs], text: str) -> list[tuple[int, TokenLogprobs]] | None:
    """Start offset of every output token, or ``None`` if they do not spell ``text``."""
    spans, at = [], 0
    for item in logprobs:
        spans.append((at, item))
        at += len(item.token)
    joined = "".join(item.token for item in logprobs)
    return spans if joined == text else None


def _token_at(spans: list[tuple[int, TokenLogprobs]], offset: int) -> tuple[int, TokenLogprobs] | None:
    lo, hi = 0, len(spans) - 1
    while lo <= hi:
        mid = (lo + hi) // 2
        start, item = spans[mid]
        if start <= offset < start + max(1, len(item.token)):
            return spans[mid]
        if offset < start:
            hi = mid - 1
        else:
            lo = mid + 1
    return None


def from_lines(response: LLMResponse, lengths: list[int]) -> Predictions:
    """One ``k: v v v`` line per example; digits' log-probs refine each written value."""
    text = response.text or ""
    spans = _offsets(response.output_logprobs, text) if response.output_logprobs else None
    found: dict[int, list[float] | ParseError] = {}
    at = 0
    for line in text.splitlines(keepends=True):
        match = _LINE.match(line.rstrip("\r\n"))
        if match:
            number = int(match.group(1))
            base = at + match.start(2)
            values: list[float] = []
            bad = None
            for item in _INT.finditer(match.group(2)):
                written = float(item.group())
                if not 0 <= written <= 10:
                    bad = ParseError(f"example {number} has the out-of-range value {item.group()}")
                    break
                value = written
                if spans is not None:
                    hit = _token_at(spans, base + item.start())
                    if hit is not None and hit[1].token.strip() == item.group():
                        refined = expected_value(hit[1].top)
                        value = refined if refined is not None else written
                values.append(value)
            if number not in found:
                found[number] = bad or values
        at += len(line)
    return [_checked(found.get(k), k, n) for k, n in enumerate(lengths, 1)]


def from_json(response: LLMResponse, lengths: list[int]) -> Predictions:
    """``{"1": [..], "2": [..]}`` (a list of lists is accepted too)."""
    text = (response.text or "").strip()
    start, end = text.find("{"), text.rfind("}")
    data: object = None
    if start != -1 and end > start:
        try:
            data = json.loads(text[start:end + 1])
        except json.JSONDecodeError:
            data = None
    if data is None and text.find("[") != -1:
        try:
            data = json.loads(text[text.find("["):text.rfind("]") + 1])
        except json.JSONDecodeError:
            data = None
    if isinstance(data, dict) and isinstance(data.get("predictions"), (list, dict)):
        data = data["predictions"]
    if isinstance(data, list):
        data = {str(i): v for i, v in enumerate(data, 1)}
    if not isinstance(data, dict):
        error = ParseError("the answer is not a JSON object of predictions")
        return [error for _ in lengths]
    out: Predictions = []
    for k, n in enumerate(lengths, 1):
        raw = data.get(str(k))
        if not isinstance(raw, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw):
            out.append(ParseError(f"example {k} has no list of numbers"))
        elif any(not 0 <= v <= 10 for v in raw):
            out.append(ParseError(f"example {k} has values outside 0-10"))
        else:
            out.append(_checked([float(v) for v in raw], k, n))
    return out


def _checked(values: list[float] | ParseError | None, number: int, length: int) -> list[float] | ParseError:
    if values is None:
        return ParseError(f"example {number} is missing from the answer")
    if isinstance(values, ParseError):
        return values
    if len(values) != length:
        return ParseError(f"example {number} has {len(values)} values for {length} tokens")
    return values
