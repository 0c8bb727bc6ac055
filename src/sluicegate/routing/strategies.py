"""Load-balancing strategies: in which order an alias's deployments are tried for one request.

A strategy only orders; the router skips deployments that are cooling down or saturated and fails over
down the order. Adding a strategy is adding a class with `order()` here and its name to `Strategy` in
routing/config.py.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from sluicegate.routing.router import Deployment

#: (input, output) USD per 1M tokens
Prices = tuple[float, float]
PriceLookup = Callable[["Deployment"], Prices | None]

_price_table: PriceLookup | None = None


def set_price_table(lookup: PriceLookup | None) -> None:
    """Let a price table (governance) price deployments that have no prices in the config."""
    global _price_table
    _price_table = lookup


def deployment_price(deployment: Deployment) -> Prices | None:
    """The deployment's prices: the config's `input_price` / `output_price` first, then the price table."""
    if deployment.prices is not None:
        return deployment.prices
    return _price_table(deployment) if _price_table is not None else None


class Strategy(Protocol):
    def order(self, deployments: Sequence[Deployment]) -> Sequence[Deployment]: ...


class Priority:
    """The config's order: the first healthy deployment takes everything, the rest are the failover chain."""

    def order(self, deployments: Sequence[Deployment]) -> Sequence[Deployment]:
        return deployments


class Weighted:
    """Random by `weight`; the failover order is drawn by weight too."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def order(self, deployments: Sequence[Deployment]) -> Sequence[Deployment]:
        # Weighted sampling without replacement (Efraimidis-Spirakis): the largest u ** (1 / w) goes first,
        # which makes deployment i first with probability w_i / sum(w).
        rng = self._rng
        return sorted(deployments, key=lambda d: rng.random() ** (1.0 / d.weight), reverse=True)


class RoundRobin:
    def __init__(self) -> None:
        self._next = 0

    def order(self, deployments: Sequence[Deployment]) -> Sequence[Deployment]:
        start = self._next % len(deployments)
        self._next = start + 1
        return [*deployments[start:], *deployments[:start]]


class LeastLatency:
    """Lowest moving average of latency (time to first token for streams); unknown or stale goes first."""

    def order(self, deployments: Sequence[Deployment]) -> Sequence[Deployment]:
        now = time.monotonic()
        return sorted(deployments, key=lambda d: d.stats.latency_rank(now))


class LeastBusy:
    """Fewest requests in flight; ties are broken at random so idle deployments share the load."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def order(self, deployments: Sequence[Deployment]) -> Sequence[Deployment]:
        rng = self._rng
        return sorted(deployments, key=lambda d: (d.stats.in_flight, rng.random()))


class Cheapest:
    """Lowest price per token (input + output per 1M); unpriced deployments come last, in config order."""

    def order(self, deployments: Sequence[Deployment]) -> Sequence[Deployment]:
        return sorted(deployments, key=_blended_price)


def _blended_price(deployment: Deployment) -> float:
    prices = deployment_price(deployment)
    return math.inf if prices is None else prices[0] + prices[1]


def make_strategy(name: str, rng: random.Random) -> Strategy:
    if name == "weighted":
        return Weighted(rng)
    if name == "round-robin":
        return RoundRobin()
    if name == "least-latency":
        return LeastLatency()
    if name == "least-busy":
        return LeastBusy(rng)
    if name == "cost":
        return Cheapest()
    return Priority()
