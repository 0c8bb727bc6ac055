"""Finds provider adapters and the catalog of named hosts, and builds providers from the config.

Adapters are discovered: every module or package under `sluicegate.providers` that defines a
`Provider` subclass with a `type_name` is registered, so adding a provider touches nothing here.
"""

from __future__ import annotations

import importlib
import pkgutil
import tomllib
from functools import cache
from pathlib import Path

import msgspec

from sluicegate.config import ProviderConfig
from sluicegate.providers.base import CatalogEntry, Provider
from sluicegate.providers.http import HttpClient

_SKIP = {"base", "http", "registry"}


@cache
def adapters() -> dict[str, type[Provider]]:
    import sluicegate.providers as package

    for module in pkgutil.iter_modules(package.__path__):
        if module.name not in _SKIP:
            importlib.import_module(f"{package.__name__}.{module.name}")
    found: dict[str, type[Provider]] = {}
    pending = list(Provider.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        type_name = getattr(cls, "type_name", None)
        if type_name:
            found[type_name] = cls
    return found


@cache
def catalog() -> dict[str, CatalogEntry]:
    data = tomllib.loads((Path(__file__).parent / "catalog.toml").read_text(encoding="utf-8"))
    return {
        name: CatalogEntry(
            name=name,
            adapter=entry["adapter"],
            base_url=entry.get("base_url"),
            key_env=entry.get("key_env"),
            drop_params=tuple(entry.get("drop_params", ())),
            rename_params=tuple(entry.get("rename_params", {}).items()),
            no_auth=bool(entry.get("no_auth", False)),
        )
        for name, entry in data.items()
    }


def known_types() -> set[str]:
    return set(catalog()) | set(adapters())


def resolve(
    config: ProviderConfig, environ: dict[str, str] | None = None
) -> tuple[type[Provider], ProviderConfig, CatalogEntry]:
    """The adapter class and the config with the catalog's defaults (base URL, key variable) filled in."""
    import os

    env = os.environ if environ is None else environ
    entry = catalog().get(config.type) or CatalogEntry(name=config.type, adapter=config.type)
    adapter = adapters()[entry.adapter]
    updates: dict[str, object] = {}
    if config.base_url is None and entry.base_url is not None:
        updates["base_url"] = entry.base_url
    if config.api_key is None and entry.key_env and env.get(entry.key_env):
        updates["api_key"] = env[entry.key_env]
    return adapter, (msgspec.structs.replace(config, **updates) if updates else config), entry


def build_provider(name: str, config: ProviderConfig) -> Provider:
    adapter, resolved, entry = resolve(config)
    return adapter(name, resolved, HttpClient(max_connections=resolved.max_connections), entry)
