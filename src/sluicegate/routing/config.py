"""Config sections owned by routing: per-alias routing and per-deployment knobs.

The per-deployment keys (weight, max_concurrent, rpm, tpm, timeout, prices) live on `DeploymentConfig` in
the top-level schema because users write them flat next to `provider` and `model`; their types are here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

import msgspec

if TYPE_CHECKING:
    from sluicegate.config import Config

Strategy = Literal["priority", "weighted", "round-robin", "least-latency", "least-busy", "cost"]
Seconds = Annotated[float, msgspec.Meta(gt=0)]
NonNegative = Annotated[float, msgspec.Meta(ge=0)]
PositiveInt = Annotated[int, msgspec.Meta(gt=0)]
Weight = Annotated[float, msgspec.Meta(gt=0)]
#: USD per one million tokens
Price = Annotated[float, msgspec.Meta(ge=0)]

#: upstream statuses retried on the same deployment by default; transport failures count as 502 / 504
DEFAULT_RETRY_ON = (408, 429, 500, 502, 503, 504, 529)


class TimeoutOverrides(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Seconds. Unset keys inherit: request header > deployment > alias `routing.timeout` > provider."""

    connect: Seconds | None = None
    #: until the first content of a stream, or the response headers of a plain answer
    first_token: Seconds | None = None
    #: one attempt, whole stream included
    total: Seconds | None = None
    #: a stream that sends nothing for this long after its first content is cut and ends with an error
    #: event; unset, the provider's `first_token` bounds every read instead
    inter_chunk: Seconds | None = None


class CooldownConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The circuit breaker: when a deployment is taken out, for how long, and how it comes back."""

    #: failed attempts within `window` that take the deployment out; 0 turns the breaker off
    failures: Annotated[int, msgspec.Meta(ge=0)] = 5
    window: Seconds = 60.0
    #: ...and at least this share of the window's attempts failed, so a busy deployment is not taken out
    #: for a handful of errors among thousands of answers
    min_error_rate: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.5
    #: seconds out before one half-open probe request may try it again
    duration: Seconds = 30.0
    #: a 429 with Retry-After takes the deployment out for that long (at most `max_duration`)
    on_rate_limit: bool = True
    max_duration: Seconds = 300.0


class RoutingConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    strategy: Strategy = "priority"
    #: extra attempts per deployment on retryable failures, before moving on to the next one
    retries: Annotated[int, msgspec.Meta(ge=0, le=10)] = 0
    #: upstream statuses that are retried; connection errors, garbled answers and errors inside a 200
    #: count as 502, timeouts as 504. 400/401/403/404 are never retried whatever this says.
    retry_on: list[int] = msgspec.field(default_factory=lambda: list(DEFAULT_RETRY_ON))
    #: first backoff in seconds; doubles on each retry, with full jitter, up to `max_backoff`
    backoff: NonNegative = 0.25
    max_backoff: NonNegative = 5.0
    #: a Retry-After up to this is waited for before retrying; a longer one moves on to the next deployment
    max_retry_after: NonNegative = 10.0
    timeout: TimeoutOverrides = TimeoutOverrides()
    cooldown: CooldownConfig = CooldownConfig()
    #: aliases tried when a deployment says the prompt does not fit its context window
    context_window_fallbacks: list[str] = []
    #: aliases tried when a deployment refuses the request on content-policy grounds
    content_policy_fallbacks: list[str] = []


#: the statuses a client caused: retrying them anywhere cannot help, whatever `retry_on` says
NEVER_RETRIED = frozenset({400, 401, 403, 404, 413, 422})


def check_routing(config: Config, source: str) -> None:
    """Raise ConfigError for what msgspec cannot see in the routing sections: references between aliases."""
    from sluicegate.config import ConfigError

    problems = _problems(config, source)
    if problems:
        raise ConfigError(problems[0])


def _problems(config: Config, source: str) -> list[str]:
    aliases = {model.name for model in config.models}
    problems: list[str] = []
    for index, model in enumerate(config.models):
        where = f"models[{index}]"
        named = [
            ("fallbacks", model.fallbacks),
            ("routing.context_window_fallbacks", model.routing.context_window_fallbacks),
            ("routing.content_policy_fallbacks", model.routing.content_policy_fallbacks),
        ]
        for key, names in named:
            for number, name in enumerate(names):
                if name == model.name:
                    problems.append(f"{source}: at {where}.{key}[{number}]: an alias cannot fall back to itself")
                elif name not in aliases and not _is_direct(name, config):
                    problems.append(
                        f"{source}: at {where}.{key}[{number}]: unknown alias '{name}' "
                        "(expected an alias defined under models, or '<provider>/<model>')"
                    )
        routing = model.routing
        if routing.max_backoff < routing.backoff:
            problems.append(f"{source}: at {where}.routing.max_backoff: must not be smaller than backoff")
        for number, status in enumerate(routing.retry_on):
            if not 400 <= status <= 599:
                problems.append(f"{source}: at {where}.routing.retry_on[{number}]: expected an HTTP error status")
    return problems


def _is_direct(name: str, config: Config) -> bool:
    provider, sep, model = name.partition("/")
    return bool(sep and model and provider in config.providers)
