"""Price tables: what a model's tokens cost, so LLM usage is charged in USD.

A table maps model names to a `Price` (USD per million prompt and completion tokens).
Lookup is exact first, then the longest `prefix*` pattern (so "gpt-4o*" covers dated
snapshots such as "gpt-4o-2024-08-06"), then the default. A model with no price and no
default costs 0 USD (its tokens are still charged); `strict=True` makes that an error
instead, for deployments where every dollar must be accounted for.

No prices ship with agentos: published prices change, and a stale number that looks
authoritative is worse than none. Pass a table, or load one from JSON:
`{"gpt-4o-mini": {"prompt": 0.15, "completion": 0.6}, "*": {...}}` ("*" is the default).
"""
from __future__ import annotations

import json
import math
import os
from typing import Any, Mapping

from ..abi.errors import DriverError
from .chat import Price

PriceLike = Price | tuple[float, float] | Mapping[str, float]


def as_price(value: PriceLike, where: str = "price") -> Price:
    if isinstance(value, Price):
        return value
    if isinstance(value, Mapping):
        try:
            p, c = value["prompt"], value["completion"]
        except KeyError as e:
            raise ValueError(f"{where}: a price needs 'prompt' and 'completion' (USD per 1M tokens)") from e
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        p, c = value
    else:
        raise ValueError(f"{where}: a price is Price(prompt, completion), a pair or a dict, got {value!r}")
    for v in (p, c):
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < 0:
            raise ValueError(f"{where}: prices are finite non-negative numbers (USD per 1M tokens), got {v!r}")
    return Price(float(p), float(c))


class PriceTable:
    """Model name → `Price`. Immutable after construction (shared by concurrent calls)."""

    __slots__ = ("_exact", "_prefixes", "default", "strict")

    def __init__(self, prices: Mapping[str, PriceLike] | None = None, *, default: PriceLike | None = None,
                 strict: bool = False) -> None:
        self._exact: dict[str, Price] = {}
        prefixes: list[tuple[str, Price]] = []
        for name, value in (prices or {}).items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"price table keys are model names, got {name!r}")
            price = as_price(value, f"price for {name!r}")
            if name == "*":
                default = price if default is None else default
            elif name.endswith("*"):
                prefixes.append((name[:-1], price))
            else:
                self._exact[name] = price
        self._prefixes = sorted(prefixes, key=lambda kv: -len(kv[0]))
        self.default = as_price(default, "default price") if default is not None else None
        self.strict = strict

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], *, strict: bool = False) -> "PriceTable":
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a price table is a JSON object of model → price")
        return cls(data, strict=strict)

    def lookup(self, model: str) -> Price | None:
        p = self._exact.get(model)
        if p is not None:
            return p
        for prefix, price in self._prefixes:
            if model.startswith(prefix):
                return price
        return self.default

    def cost(self, models: tuple[str, ...], prompt_tokens: int, completion_tokens: int) -> float:
        """USD for this usage, priced by the first of `models` the table knows (the model the
        endpoint says answered, then the one asked for)."""
        for m in models:
            if m:
                p = self._exact.get(m) or next((pr for pre, pr in self._prefixes if m.startswith(pre)), None)
                if p is not None:
                    return p.cost(prompt_tokens, completion_tokens)
        if self.default is not None:
            return self.default.cost(prompt_tokens, completion_tokens)
        if self.strict:
            raise DriverError(f"no price for model {models[0]!r} in a strict price table")
        return 0.0

    def __len__(self) -> int:
        return len(self._exact) + len(self._prefixes)

    def __repr__(self) -> str:
        return f"PriceTable({len(self)} models, default={self.default})"


def price_table(prices: "PriceTable | Mapping[str, Any] | None") -> PriceTable:
    if isinstance(prices, PriceTable):
        return prices
    return PriceTable(prices)


__all__ = ["PriceTable", "as_price", "price_table"]
