"""Sluicegate: an LLM gateway. One OpenAI-compatible endpoint, or this library, in front of many providers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "Gateway",
    "GatewayError",
    "acompletion",
    "aembedding",
    "completion",
    "configure",
    "embedding",
    "step_key",
]

if TYPE_CHECKING:
    from sluicegate.errors import GatewayError
    from sluicegate.gateway import Gateway
    from sluicegate.library import acompletion, aembedding, completion, configure, embedding
    from sluicegate.workflows import step_key

_LAZY = {
    "Gateway": "sluicegate.gateway",
    "GatewayError": "sluicegate.errors",
    "acompletion": "sluicegate.library",
    "aembedding": "sluicegate.library",
    "completion": "sluicegate.library",
    "configure": "sluicegate.library",
    "embedding": "sluicegate.library",
    "step_key": "sluicegate.workflows",
}


def __getattr__(name: str) -> Any:
    # Imported on first use so that `import sluicegate` stays cheap for tools that only need the version.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sluicegate' has no attribute '{name}'")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
