"""The configuration file: schema, loading, `${VAR}` expansion and precise errors.

The YAML document is a contract with users. Every mistake is reported at start-up with the file, the
path inside the document and what was expected, never as a traceback at the first request.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import msgspec
import yaml

from sluicegate.cache.config import AliasCacheConfig, CacheConfig, IdempotencyConfig
from sluicegate.governance.config import AliasLimitsConfig, GovernanceConfig
from sluicegate.guardrails.config import GuardrailConfig, check_guardrails
from sluicegate.observability.config import ObservabilityConfig
from sluicegate.providers.bedrock.config import AwsConfig
from sluicegate.providers.vertex.config import VertexConfig
from sluicegate.routing.config import PositiveInt, Price, RoutingConfig, TimeoutOverrides, Weight, check_routing


class _Loader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false. YAML 1.1 also reads `on`, `off`, `yes` and `no` as booleans,
    which would turn the guardrail key `on:` into `True:`."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


class ConfigError(Exception):
    """A configuration problem, already phrased for the person who wrote the file."""


class TimeoutConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    connect: float = 10.0
    first_token: float = 300.0
    total: float = 600.0


class ProviderConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    #: openai | azure | anthropic | gemini | demo, or a host from the catalog (groq, mistral, ollama, ...)
    type: str
    api_key: str | None = None
    base_url: str | None = None
    #: Azure OpenAI `api-version` query parameter
    api_version: str | None = None
    #: extra headers sent with every request to this provider
    headers: dict[str, str] = {}
    timeout: TimeoutConfig = TimeoutConfig()
    max_connections: int = 1000
    #: Bedrock: region, credentials, cross-region inference profile (see providers/bedrock/config.py)
    aws: AwsConfig | None = None
    #: Vertex AI: project, location, service-account key (see providers/vertex/config.py)
    vertex: VertexConfig | None = None


class DeploymentConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    provider: str
    model: str
    # --- routing (see routing/config.py) ---
    #: relative share of traffic under the `weighted` strategy
    weight: Weight = 1.0
    #: the router skips this deployment while this many requests are in flight on it
    max_concurrent: PositiveInt | None = None
    #: requests / tokens per minute this deployment may take before the router skips it
    rpm: PositiveInt | None = None
    tpm: PositiveInt | None = None
    #: overrides of the provider's timeouts for this deployment
    timeout: TimeoutOverrides | None = None
    #: USD per 1M tokens, for the `cost` strategy when the price table does not know this model
    input_price: Price | None = None
    output_price: Price | None = None


class ModelConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    name: str
    deployments: list[DeploymentConfig]
    routing: RoutingConfig = RoutingConfig()
    #: aliases tried, in order, when every deployment of this one failed
    fallbacks: list[str] = []
    #: true/false, or overrides of the top-level cache section; None: the top-level default
    cache: bool | AliasCacheConfig | None = None
    #: names of guardrails (from the top-level `guardrails:` list) applied to this alias
    guardrails: list[str] = []
    limits: AliasLimitsConfig | None = None


class ServerConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    host: str = "127.0.0.1"
    port: int = 4000
    workers: int = 1
    #: requests with a larger body are refused with 413
    max_request_bytes: int = 25 * 1024 * 1024
    #: on SIGTERM: seconds readiness reports 503 before the listener closes, so load balancers stop sending
    drain_delay: float = 2.0
    #: on SIGTERM: seconds in-flight requests and streams get to finish before they are cut
    shutdown_grace: float = 30.0
    #: reload the YAML when the file changes (mtime polled every second); SIGHUP always reloads
    watch_config: bool = True


class Config(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    providers: dict[str, ProviderConfig] = {}
    models: list[ModelConfig] = []
    #: bearer token clients must send; without one the gateway is open
    master_key: str | None = None
    #: sqlite:///path.db (default when needed) or postgresql://... for keys, spend and logs
    database_url: str | None = None
    #: redis://... to share limits, cache and health between replicas
    redis_url: str | None = None
    server: ServerConfig = ServerConfig()
    cache: CacheConfig = CacheConfig()
    #: `Idempotency-Key` replay (see cache/config.py)
    idempotency: IdempotencyConfig = IdempotencyConfig()
    guardrails: list[GuardrailConfig] = []
    observability: ObservabilityConfig = ObservabilityConfig()
    #: keys, limits, budgets, prices and spend (see governance/config.py)
    governance: GovernanceConfig = GovernanceConfig()


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def load_config(path: str | os.PathLike[str], environ: dict[str, str] | None = None) -> Config:
    """Read, expand and validate a YAML config file."""
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read the config file: {exc.strerror or exc}") from None
    # `${VAR}` is not valid YAML inside a flow mapping (`{api_key: ${KEY}}`), yet that is how people write it.
    # Swap each reference for a plain placeholder before parsing and expand the placeholders afterwards.
    references: list[str] = []

    def hide(match: re.Match[str]) -> str:
        references.append(match.group(0))
        return f"{_PLACEHOLDER}{len(references) - 1}__"

    try:
        document = yaml.load(_VAR.sub(hide, text), Loader=_Loader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    if references:
        document = _restore(document, references)
    return config_from_dict(document if document is not None else {}, source=str(source), environ=environ)


_PLACEHOLDER = "__sluicegate_var_"
_PLACEHOLDER_RE = re.compile(re.escape(_PLACEHOLDER) + r"(\d+)__")


def _restore(node: Any, references: list[str]) -> Any:
    if isinstance(node, str):
        return _PLACEHOLDER_RE.sub(lambda m: references[int(m.group(1))], node)
    if isinstance(node, dict):
        return {_restore(key, references): _restore(value, references) for key, value in node.items()}
    if isinstance(node, list):
        return [_restore(value, references) for value in node]
    return node


def config_from_dict(document: Any, *, source: str = "<config>", environ: dict[str, str] | None = None) -> Config:
    if not isinstance(document, dict):
        raise ConfigError(f"{source}: the document must be a mapping, got {type(document).__name__}")
    expanded = _expand(document, "", os.environ if environ is None else environ, source)
    _check_named_sections(expanded, source)
    try:
        config = msgspec.convert(expanded, Config, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {_describe_validation_error(str(exc))}") from None
    _check_references(config, source)
    return config


def _expand(node: Any, path: str, environ: Any, source: str) -> Any:
    if isinstance(node, str):
        return _expand_string(node, path, environ, source)
    if isinstance(node, dict):
        return {
            key: _expand(value, f"{path}.{key}" if path else str(key), environ, source) for key, value in node.items()
        }
    if isinstance(node, list):
        return [_expand(value, f"{path}[{index}]", environ, source) for index, value in enumerate(node)]
    return node


def _expand_string(value: str, path: str, environ: Any, source: str) -> str:
    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in environ:
            return str(environ[name])
        if default is not None:
            return default
        raise ConfigError(
            f"{source}: at {path}: environment variable {name} is not set "
            f"(set it, or write ${{{name}:-default}} to give a default)"
        )

    return _VAR.sub(replace, value) if "${" in value else value


#: top-level mappings whose values are structs: msgspec reports their keys as `[...]`, so check each by name
_NAMED_SECTIONS: dict[str, type[msgspec.Struct]] = {"providers": ProviderConfig}


def _check_named_sections(document: dict[str, Any], source: str) -> None:
    for section, schema in _NAMED_SECTIONS.items():
        entries = document.get(section)
        if not isinstance(entries, dict):
            continue
        for name, value in entries.items():
            try:
                msgspec.convert(value, schema, strict=False)
            except msgspec.ValidationError as exc:
                raise ConfigError(f"{source}: {_describe_validation_error(str(exc), f'{section}.{name}')}") from None


def _describe_validation_error(message: str, prefix: str = "") -> str:
    # msgspec says "Expected `int`, got `str` - at `$.server.port`"; lead with the path instead.
    text, sep, where = message.rpartition(" - at `")
    if not sep:
        text, where = message, ""
    location = (prefix + where.rstrip("`").removeprefix("$")).lstrip(".") or "the top level"
    text = text.replace("Object contains unknown field", "unknown key")
    return f"at {location}: {text}"


def _check_references(config: Config, source: str) -> None:
    from sluicegate.providers.registry import known_types

    types = known_types()
    for name, provider in config.providers.items():
        if provider.type not in types:
            raise ConfigError(
                f"{source}: at providers.{name}.type: unknown provider type '{provider.type}' "
                f"(expected one of: {', '.join(sorted(types))})"
            )
    seen: set[str] = set()
    for index, model in enumerate(config.models):
        where = f"models[{index}]"
        if model.name in seen:
            raise ConfigError(f"{source}: at {where}.name: the alias '{model.name}' is defined twice")
        seen.add(model.name)
        if not model.deployments:
            raise ConfigError(f"{source}: at {where}.deployments: an alias needs at least one deployment")
        for number, deployment in enumerate(model.deployments):
            if deployment.provider not in config.providers:
                known = ", ".join(sorted(config.providers)) or "none are defined"
                raise ConfigError(
                    f"{source}: at {where}.deployments[{number}].provider: unknown provider "
                    f"'{deployment.provider}' (expected one of the names under providers: {known})"
                )
    if config.server.max_request_bytes <= 0:
        raise ConfigError(f"{source}: at server.max_request_bytes: expected a positive number of bytes")
    check_routing(config, source)
    try:
        check_guardrails(config.guardrails, [model.guardrails for model in config.models])
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from None
