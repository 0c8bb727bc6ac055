"""What a request cost: the shipped price table, per-deployment overrides, and the arithmetic.

Every provider's usage is normalised to the OpenAI shape before it gets here (see providers/base.py):
`prompt_tokens` includes the cached reads and the cache writes, `completion_tokens` includes reasoning.
The cost splits them back apart so each part is charged at its own price.
"""

from __future__ import annotations

import logging
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import msgspec

from sluicegate.config import Config
from sluicegate.errors import ConfigurationError
from sluicegate.governance.config import PriceConfig
from sluicegate.providers.base import Usage

log = logging.getLogger("sluicegate.governance")

_PER_MILLION = 1_000_000.0
_SNAPSHOT_SEPARATORS = ("-", "@", ":")


@dataclass(frozen=True, slots=True)
class Price:
    """USD per token."""

    input: float
    output: float
    cached_input: float
    cache_write: float
    reasoning: float
    per_request: float = 0.0

    @classmethod
    def per_million(
        cls,
        input: float = 0.0,
        output: float = 0.0,
        cached_input: float | None = None,
        cache_write: float | None = None,
        reasoning: float | None = None,
        per_request: float = 0.0,
    ) -> Price:
        return cls(
            input=input / _PER_MILLION,
            output=output / _PER_MILLION,
            cached_input=(input if cached_input is None else cached_input) / _PER_MILLION,
            cache_write=(input if cache_write is None else cache_write) / _PER_MILLION,
            reasoning=(output if reasoning is None else reasoning) / _PER_MILLION,
            per_request=per_request,
        )


FREE = Price(0.0, 0.0, 0.0, 0.0, 0.0)


def cost(usage: Usage, price: Price) -> float:
    """USD for one request's usage."""
    cached = min(usage.cached_tokens, usage.prompt_tokens)
    written = min(usage.cache_creation_tokens, usage.prompt_tokens - cached)
    fresh = usage.prompt_tokens - cached - written
    reasoning = min(usage.reasoning_tokens, usage.completion_tokens)
    visible = usage.completion_tokens - reasoning
    return (
        fresh * price.input
        + cached * price.cached_input
        + written * price.cache_write
        + visible * price.output
        + reasoning * price.reasoning
        + price.per_request
    )


def format_cost(value: float) -> str:
    """`x-sluicegate-cost`: USD with enough decimals for a single cheap request (1e-10 $)."""
    text = f"{value:.10f}".rstrip("0").rstrip(".")
    return text or "0"


_REGIONS = frozenset({"us", "eu", "apac", "global", "us-gov", "jp", "au", "ca"})


class PriceTable:
    """The data file: `[<provider type>] "<model>" = {input = ..., output = ...}` plus a few rules."""

    def __init__(self, document: dict[str, Any], source: str = "prices.toml") -> None:
        self.source = source
        self.date = str(document.get("date", "unknown"))
        rules = document.get("rules") or {}
        self._free = frozenset(rules.get("free") or ())
        self._same_as: dict[str, list[str]] = {
            host: [others] if isinstance(others, str) else list(others)
            for host, others in (rules.get("same_as") or {}).items()
        }
        self._by_vendor = frozenset(rules.get("by_vendor") or ())
        self._dotted = frozenset(rules.get("dotted") or ())
        self._tables: dict[str, dict[str, PriceConfig]] = {}
        for host, models in document.items():
            if host in ("date", "currency", "unit", "rules") or not isinstance(models, dict):
                continue
            try:
                self._tables[host] = {name: msgspec.convert(fields, PriceConfig) for name, fields in models.items()}
            except msgspec.ValidationError as exc:
                raise ConfigurationError(f"{source}: [{host}]: {exc}") from None

    @classmethod
    def load(cls, path: str | None = None) -> PriceTable:
        if path is None:
            text = resources.files("sluicegate.governance").joinpath("prices.toml").read_text("utf-8")
            return cls(tomllib.loads(text))
        try:
            return cls(tomllib.loads(Path(path).read_text("utf-8")), source=path)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigurationError(f"governance.prices_file: cannot read {path}: {exc}") from None

    def covers(self, provider_type: str) -> bool:
        """Whether the table prices any model of hosts of this type."""
        return any(provider_type in group for group in (self._free, self._by_vendor, self._tables, self._same_as))

    def lookup(self, provider_type: str, model: str) -> PriceConfig | None:
        """The table's entry for `model` at a host of type `provider_type`, in USD per 1M tokens."""
        if provider_type in self._free:
            return PriceConfig()
        if provider_type in self._by_vendor:
            vendor, _, name = model.partition("/")
            return self._match(self._tables.get(vendor, {}), name) if name else None
        price = self._match(self._tables.get(provider_type, {}), model)
        others = self._same_as.get(provider_type, ())
        if provider_type in self._dotted:
            region, _, rest = model.partition(".")
            if region in _REGIONS:
                model = rest
                price = price or self._match(self._tables.get(provider_type, {}), model)
            model = model.partition(".")[2] or model
        for other in others:
            if price is not None:
                break
            price = self._match(self._tables.get(other, {}), model)
        return price

    @staticmethod
    def _match(table: dict[str, PriceConfig], model: str) -> PriceConfig | None:
        price = table.get(model)
        if price is not None:
            return price
        best = ""
        for name in table:
            if len(name) > len(best) and model.startswith(name) and model[len(name)] in _SNAPSHOT_SEPARATORS:
                best = name
        return table[best] if best else None


class PriceBook:
    """The price of each deployment of one config, resolved once at start-up instead of per request.

    A deployment's price, first found wins: `governance.prices["<provider>/<model>"]` (every field), the
    table's entry with the deployment's `input_price` / `output_price` put in (the fields the routing
    `cost` strategy reads too), the table's entry.
    """

    def __init__(self, config: Config, table: PriceTable | None = None) -> None:
        self.table = table or PriceTable.load(config.governance.prices_file)
        self._types = {name: provider.type for name, provider in config.providers.items()}
        self._overrides = dict(config.governance.prices)
        self._by_label: dict[str, Price | None] = {}
        self._aliases: dict[str, bool] = {}
        unpriced: set[str] = set()
        for model in config.models:
            priced = False
            for deployment in model.deployments:
                label = f"{deployment.provider}/{deployment.model}"
                if label not in self._by_label or deployment.input_price is not None:
                    entry = self._entry(label, deployment.provider, deployment.model)
                    if deployment.input_price is not None or deployment.output_price is not None:
                        entry = msgspec.structs.replace(
                            entry or PriceConfig(),
                            input=deployment.input_price if deployment.input_price is not None else _input(entry),
                            output=deployment.output_price if deployment.output_price is not None else _output(entry),
                        )
                    self._by_label[label] = _price(entry)
                if self._by_label[label] is None:
                    unpriced.add(label)
                else:
                    priced = True
            self._aliases[model.name] = priced
        if unpriced:
            log.info(
                "no price for %s in the price table of %s: their cost is not tracked (set governance.prices)",
                ", ".join(sorted(unpriced)),
                self.table.date,
            )

    def _entry(self, label: str, provider: str, model: str) -> PriceConfig | None:
        override = self._overrides.get(label)
        if override is not None:
            return override
        kind = self._types.get(provider)
        return self.table.lookup(kind, model) if kind and model else None

    def for_label(self, label: str | None) -> Price | None:
        """The price of the deployment `label` (`<provider>/<model>`), None when unknown."""
        if label is None:
            return None
        try:
            return self._by_label[label]
        except KeyError:
            pass
        # A deployment addressed directly as `<provider>/<model>`: resolved on first use, then remembered.
        provider, _, model = label.partition("/")
        price = _price(self._entry(label, provider, model))
        if len(self._by_label) < 10_000:
            self._by_label[label] = price
        return price

    def alias_priced(self, alias: str) -> bool:
        """Whether any deployment of `alias` has a price (so its requests need costing at all)."""
        priced = self._aliases.get(alias)
        if priced is None:
            provider, sep, _ = alias.partition("/")
            priced = bool(sep) and provider in self._types and self.for_label(alias) is not None
        return priced

    def input_output(self, label: str) -> tuple[float, float] | None:
        """(input, output) in USD per 1M tokens: what the routing `cost` strategy compares."""
        price = self.for_label(label)
        return None if price is None else (price.input * _PER_MILLION, price.output * _PER_MILLION)


def _input(entry: PriceConfig | None) -> float:
    return entry.input if entry is not None else 0.0


def _output(entry: PriceConfig | None) -> float:
    return entry.output if entry is not None else 0.0


def _price(entry: PriceConfig | None) -> Price | None:
    if entry is None:
        return None
    return Price.per_million(
        input=entry.input,
        output=entry.output,
        cached_input=entry.cached_input,
        cache_write=entry.cache_write,
        reasoning=entry.reasoning,
        per_request=entry.per_request,
    )
