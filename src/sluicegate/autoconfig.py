"""A gateway without a config file: providers from the usual key variables, the demo provider always.

With no provider key set the gateway still answers (offline, from the demo provider), so the quickstart
works on a machine with nothing but Python.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from sluicegate.config import Config, DeploymentConfig, ModelConfig, ProviderConfig, load_config
from sluicegate.gateway import Gateway
from sluicegate.providers.registry import catalog

log = logging.getLogger("sluicegate")

DEMO_ALIAS = "demo"


def config_from_environment(environ: Mapping[str, str] | None = None) -> Config:
    env = os.environ if environ is None else environ
    providers: dict[str, ProviderConfig] = {}
    for name, entry in catalog().items():
        if entry.key_env and env.get(entry.key_env) and entry.adapter != "azure":
            providers[name] = ProviderConfig(type=name, api_key=env[entry.key_env])
    providers["demo"] = ProviderConfig(type="demo")
    models = [ModelConfig(name=DEMO_ALIAS, deployments=[DeploymentConfig(provider="demo", model="demo-1")])]
    return Config(providers=providers, models=models, master_key=env.get("SLUICEGATE_MASTER_KEY") or None)


def gateway_from_environment(config_path: str | None = None) -> Gateway:
    """The gateway for `config_path`, or configured from the environment when there is none."""
    if config_path:
        return Gateway(load_config(config_path))
    config = config_from_environment()
    real = sorted(name for name in config.providers if name != "demo")
    log.info(
        "no config file: serving %s; address models as '<provider>/<model>' or use the alias '%s'",
        ", ".join(real) if real else "the offline demo provider only (no provider key variable is set)",
        DEMO_ALIAS,
    )
    return Gateway(config)
