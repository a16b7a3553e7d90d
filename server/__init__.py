"""forgetd.server: the engine that trains and forgets, and the daemon that serves it.

Where to start:

    from forgetd.server import Engine, EngineConfig, ServerConfig, create_server, load_dataset

    engine = Engine.train(load_dataset("synthetic", n=2000, seed=0), EngineConfig(slices=10), "store")
    server, port = create_server(ServerConfig(store="store", listen="127.0.0.1:0"))

The public names load lazily, so importing the error tree or the configuration does not import torch (the
auditor's chain check and the client must run without it). docs/architecture.md maps the packages.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from forgetd.server.config import EngineConfig, ServerConfig
from forgetd.server.errors import ForgetdError

if TYPE_CHECKING:
    from forgetd.server.daemon.server import Daemon, create_server
    from forgetd.server.data import Dataset, load_dataset
    from forgetd.server.engine.engine import Engine

_LAZY = {
    "Engine": "forgetd.server.engine.engine",
    "Daemon": "forgetd.server.daemon.server",
    "create_server": "forgetd.server.daemon.server",
    "Dataset": "forgetd.server.data",
    "load_dataset": "forgetd.server.data",
}

__all__ = ["Daemon", "Dataset", "Engine", "EngineConfig", "ForgetdError", "ServerConfig", "create_server",
           "load_dataset"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'forgetd.server' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
