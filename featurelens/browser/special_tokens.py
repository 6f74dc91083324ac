"""Which tokens of an example are special (BOS, EOS, ``<|im_start|>``, padding).

They are never examples (extraction excludes them), but they sit in the windows and,
shown as text, read like content: every window would start with ``<|im_start|>``. The
browser hides them unless the reader asks (``?special=1``). Stores record the model's
special tokens in ``models.config.special_tokens`` at extraction; for older stores a
token written like ``<|...|>`` or one of the usual BOS/EOS/padding spellings counts.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable

_CHAT_MARKER = re.compile(r"^<\|[^|<>\s]{1,40}\|>$")
_USUAL = frozenset({"<s>", "</s>", "<pad>", "<unk>", "<bos>", "<eos>", "<mask>", "[CLS]", "[SEP]", "[PAD]"})


class SpecialTokens:
    """A set of special token strings, with the pattern fallback for unrecorded models."""

    def __init__(self, recorded: frozenset[str] | None):
        self.recorded = recorded
        self._matched: dict[str, bool] = {}  #: the pattern's answer per token (pages ask per token)

    def __contains__(self, token: object) -> bool:
        if not isinstance(token, str):
            return False
        if self.recorded is not None:
            return token in self.recorded
        found = self._matched.get(token)
        if found is None:
            if len(self._matched) > 1 << 16:  # a vocabulary's worth; bounded whatever the text
                self._matched.clear()
            found = self._matched[token] = token in _USUAL or bool(_CHAT_MARKER.match(token))
        return found


def recorded_special_tokens(config: Any) -> frozenset[str] | None:
    """``special_tokens`` from a ``models.config`` JSON value, or None when absent."""
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except json.JSONDecodeError:
            return None
    found = config.get("special_tokens") if isinstance(config, dict) else None
    return frozenset(str(t) for t in found) if isinstance(found, list) else None


def special_tokens_of(rows: Callable[[str, list[Any]], list[dict[str, Any]]], model_id: str | None) -> SpecialTokens:
    """The special tokens of ``model_id`` as its ``models`` row records them."""
    if not model_id:
        return SpecialTokens(None)
    found = rows("SELECT CAST(config AS VARCHAR) AS config FROM models WHERE model_id = ?", [model_id])
    return SpecialTokens(recorded_special_tokens(found[0]["config"]) if found else None)
