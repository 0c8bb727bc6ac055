"""The single place that picks deployments for a request and moves on when one fails."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from sluicegate.errors import GatewayError, NotFoundError, ServiceUnavailableError
from sluicegate.providers.base import Provider, Timeouts

T = TypeVar("T")


@dataclass(slots=True)
class Deployment:
    """One model at one provider, as an alias lists it."""

    provider: Provider
    model: str
    timeouts: Timeouts
    #: what `x-sluicegate-provider` says: `<provider name>/<model>`
    label: str = ""

    def __post_init__(self) -> None:
        if not self.label:
            self.label = f"{self.provider.name}/{self.model}"


@dataclass(slots=True)
class Attempt:
    deployment: str
    error: str | None = None
    status: int | None = None


@dataclass(slots=True)
class Routed(Generic[T]):
    deployment: Deployment
    value: T
    attempts: list[Attempt] = field(default_factory=list)


def provider_timeouts(provider: Provider) -> Timeouts:
    timeout = provider.config.timeout
    return Timeouts(connect=timeout.connect, first_token=timeout.first_token, total=timeout.total)


class Router:
    def __init__(self, aliases: dict[str, list[Deployment]], providers: dict[str, Provider]) -> None:
        self._aliases = aliases
        self._providers = providers
        self._direct: dict[str, list[Deployment]] = {}

    @property
    def aliases(self) -> list[str]:
        return list(self._aliases)

    def candidates(self, model: str) -> list[Deployment]:
        """The deployments for `model`: an alias, or `provider/model` addressed directly."""
        deployments = self._aliases.get(model) or self._direct.get(model)
        if deployments is not None:
            return deployments
        provider_name, sep, provider_model = model.partition("/")
        provider = self._providers.get(provider_name) if sep and provider_model else None
        if provider is None:
            raise NotFoundError(
                f"The model '{model}' does not exist: it is neither a configured alias nor '<provider>/<model>' "
                "with a configured provider",
                param="model",
            )
        deployments = [Deployment(provider, provider_model, provider_timeouts(provider))]
        self._direct[model] = deployments
        return deployments

    async def route(self, model: str, attempt: Callable[[Deployment], Awaitable[T]]) -> Routed[T]:
        """Run `attempt` on each candidate in order until one succeeds.

        Errors the client caused (bad request, provider refusing the request) end the search at once:
        another deployment would refuse it too.
        """
        attempts: list[Attempt] = []
        last_error: GatewayError | None = None
        for deployment in self.candidates(model):
            try:
                value = await attempt(deployment)
            except GatewayError as exc:
                attempts.append(Attempt(deployment.label, exc.code, exc.status))
                if not exc.retryable:
                    raise
                last_error = exc
                continue
            return Routed(deployment, value, attempts)
        raise last_error or ServiceUnavailableError(f"no deployment available for '{model}'")
