"""HTTP routes, one module per surface. Each module defines `routes(gateway) -> RouteTable`; the app
collects them all, so adding an endpoint family is adding one module here."""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sluicegate.gateway import Gateway
    from sluicegate.server.asgi import RouteTable


def collect_routes(gateway: Gateway) -> RouteTable:
    table: RouteTable = {}
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        for path, methods in module.routes(gateway).items():
            table.setdefault(path, {}).update(methods)
    return table
