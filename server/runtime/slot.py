"""The slot the servicers read the running runtime from: empty while the daemon loads and once it shuts down."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from forgetd.server.errors import NotServing

if TYPE_CHECKING:  # the runtime imports torch; the slot must import without it (servicers exist before a store loads)
    from forgetd.server.runtime.runtime import Runtime


@dataclass
class RuntimeSlot:
    """Holds the running daemon state once loaded; servicers read it on every call."""

    runtime: Runtime | None = None
    shutting_down: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self) -> Runtime:
        runtime = self.runtime
        if runtime is None or self.shutting_down:
            raise NotServing("the server is loading its model or shutting down; retry shortly")
        return runtime
