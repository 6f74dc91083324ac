"""What calls cost: a price table in USD per million tokens, overridable by users.

The built-in table holds list prices for common models when this file was written;
prices change, so a JSON file named by ``$FEATURELENS_PRICES`` (or ``--prices``) adds
or replaces entries: ``{"openai:gpt-4o-mini": {"input": 0.15, "cached_input": 0.075,
"output": 0.6, "batch_discount": 0.5}}``. A model with no price gets a NULL cost and a
warning, never a made-up number; ``local:*`` is free.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from featurelens.core.errors import FeaturelensError

ENV_PRICES = "FEATURELENS_PRICES"


@dataclass(frozen=True)
class Price:
    """USD per million tokens; ``batch_discount`` multiplies the cost of batch-API calls."""

    input: float
    output: float
    cached_input: float | None = None
    batch_discount: float = 0.5

    def cost(self, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0,
             batch: bool = False) -> float:
        cached_rate = self.cached_input if self.cached_input is not None else self.input
        fresh = max(0, input_tokens - cached_input_tokens)
        usd = (fresh * self.input + cached_input_tokens * cached_rate
               + output_tokens * self.output) / 1e6
        return usd * (self.batch_discount if batch else 1.0)


DEFAULT_PRICES: dict[str, Price] = {
    "openai:gpt-4o-mini": Price(0.15, 0.60, 0.075),
    "openai:gpt-4o": Price(2.50, 10.00, 1.25),
    "openai:gpt-4.1": Price(2.00, 8.00, 0.50),
    "openai:gpt-4.1-mini": Price(0.40, 1.60, 0.10),
    "openai:gpt-4.1-nano": Price(0.10, 0.40, 0.025),
    "openai:gpt-5-mini": Price(0.25, 2.00, 0.025),
    "openai:gpt-5-nano": Price(0.05, 0.40, 0.005),
    "anthropic:claude-haiku-4-5": Price(1.00, 5.00, 0.10),
    "anthropic:claude-sonnet-4-5": Price(3.00, 15.00, 0.30),
    "anthropic:claude-3-5-haiku-latest": Price(0.80, 4.00, 0.08),
}

FREE_PROVIDERS = {"local", "offline"}


class PriceTable:
    """Prices by ``provider:model``; see the module docstring for the override file."""

    def __init__(self, prices: dict[str, Price] | None = None):
        self.prices = dict(DEFAULT_PRICES if prices is None else prices)

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> "PriceTable":
        """Built-in prices, updated from ``path`` or ``$FEATURELENS_PRICES`` when given."""
        table = cls()
        source = path or os.environ.get(ENV_PRICES)
        if source:
            table.prices.update(_read(Path(source)))
        return table

    def price(self, provider: str, model: str) -> Price | None:
        if provider in FREE_PROVIDERS:
            return Price(0.0, 0.0, 0.0)
        return self.prices.get(f"{provider}:{model}")

    def cost(self, provider: str, model: str, input_tokens: int, output_tokens: int,
             cached_input_tokens: int = 0, batch: bool = False) -> float | None:
        """USD for one call, or ``None`` when the model has no price."""
        price = self.price(provider, model)
        if price is None:
            return None
        return price.cost(input_tokens, output_tokens, cached_input_tokens, batch)


def _read(path: Path) -> dict[str, Price]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise FeaturelensError(f"Cannot read the price file {path} ({error.strerror}); "
                               f"fix the path in --prices or ${ENV_PRICES}.") from None
    except json.JSONDecodeError as error:
        raise FeaturelensError(f"The price file {path} is not valid JSON ({error.msg} at line "
                               f"{error.lineno}); fix it or unset ${ENV_PRICES}.") from None
    except UnicodeDecodeError:
        raise FeaturelensError(f"The price file {path} is not UTF-8 text, so not JSON; point --prices or "
                               f"${ENV_PRICES} at a JSON price table.") from None
    out: dict[str, Price] = {}
    for name, entry in (data.items() if isinstance(data, dict) else []):
        try:
            out[name] = Price(float(entry["input"]), float(entry["output"]),
                              None if entry.get("cached_input") is None else float(entry["cached_input"]),
                              float(entry.get("batch_discount", 0.5)))
            values = [out[name].input, out[name].output, out[name].cached_input or 0.0]
            if not all(0 <= v < math.inf for v in values) or not 0 <= out[name].batch_discount <= 1:
                raise ValueError("prices must be finite and not negative, the discount between 0 and 1")
        except (TypeError, KeyError, ValueError, AttributeError):
            raise FeaturelensError(
                f"The price file {path} entry {name!r} needs numbers 'input' and 'output' (USD "
                "per million tokens, finite and not negative), optionally 'cached_input' and "
                "'batch_discount' (0 to 1).") from None
    if not isinstance(data, dict):
        raise FeaturelensError(f"The price file {path} must hold a JSON object of "
                               '"provider:model": {"input": ..., "output": ...} entries.')
    return out
