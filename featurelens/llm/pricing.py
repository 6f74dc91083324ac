"""What calls cost: a price table in USD per million tokens, overridable by users.

The table starts from the list prices each provider declares (``ProviderInfo.prices``);
prices change, so a JSON file named by ``$FEATURELENS_PRICES`` (or ``--prices``) adds
or replaces entries: ``{"openai:gpt-4o-mini": {"input": 0.15, "cached_input": 0.075,
"output": 0.6, "batch_discount": 0.5}}``. A model with no price gets a NULL cost and a
warning, never a made-up number; a provider that declares itself ``free`` (``local``,
``offline``) costs nothing.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from featurelens.core.errors import FeaturelensError
from featurelens.core.host.protocols import Price

__all__ = ["ENV_PRICES", "Price", "PriceTable", "declared_prices"]

ENV_PRICES = "FEATURELENS_PRICES"


def declared_prices() -> dict[str, Price]:
    """Every registered provider's list prices, by ``provider:model``."""
    from featurelens.core.host.manager import get_registry

    components = get_registry().components["llm_provider"]
    return {f"{name}:{model}": price for name, component in sorted(components.items())
            if component.info is not None for model, price in component.info.prices.items()}


def __getattr__(name: str) -> dict[str, Price]:
    if name == "DEFAULT_PRICES":  # the declared prices, read when asked (plugins may add some)
        return declared_prices()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class PriceTable:
    """Prices by ``provider:model``; see the module docstring for the override file."""

    def __init__(self, prices: dict[str, Price] | None = None):
        self.prices = dict(declared_prices() if prices is None else prices)

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> "PriceTable":
        """Built-in prices, updated from ``path`` or ``$FEATURELENS_PRICES`` when given."""
        table = cls()
        source = path or os.environ.get(ENV_PRICES)
        if source:
            table.prices.update(_read(Path(source)))
        return table

    def price(self, provider: str, model: str) -> Price | None:
        from featurelens.llm.providers import provider_info

        if provider_info(provider).free:
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
