"""Serving PopEF models the way Graphcore's Poplar Triton backend does (docs/serving.md).

A Triton model repository (``<repo>/<model>/config.pbtxt``, ``<repo>/<model>/1/
executable.popef``, ``name_map.json``) served over KServe v2 HTTP and gRPC to stock
``tritonclient`` clients. The layers, each usable on its own:

- :class:`ModelRepository`: finds, configures, loads and versions models;
- :class:`InferenceCore`: the protocol core — validation, batching, execution, statistics;
- :func:`create_app` (ASGI) and :class:`InferenceServicer` (gRPC): the transports, which any
  ASGI server or gRPC server can host;
- :class:`Server`: the ``popef serve`` process (uvicorn + grpcio + metrics).

Names are imported on first use, so ``import popef.serving`` stays light.
"""

from __future__ import annotations

import importlib

__all__ = [
    "InferenceCore",
    "InferenceServicer",
    "ModelRepository",
    "RepositoryOptions",
    "Server",
    "ServerOptions",
    "ServingError",
    "Status",
    "create_app",
    "create_grpc_server",
    "create_metrics_app",
    "render_metrics",
]

_WHERE = {
    "ModelRepository": "repository",
    "RepositoryOptions": "repository",
    "InferenceCore": "core",
    "create_app": "http_app",
    "create_metrics_app": "http_app",
    "InferenceServicer": "grpc_servicer",
    "create_grpc_server": "grpc_servicer",
    "Server": "server",
    "ServerOptions": "options",
    "ServingError": ".servable.errors",
    "Status": ".servable.errors",
    "render_metrics": "metrics",
}


def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'popef.serving' has no attribute '{name}'")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
