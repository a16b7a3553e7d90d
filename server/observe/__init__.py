"""What the daemon tells about itself: Prometheus metrics (metrics.py) and the unlearning SLA (sla.py).

The runtime owns one `Metrics` (`runtime.metrics`); the worker and admission record forgets into it, the
fronts record inference requests (`with runtime.metrics.inference(version): ...`), and the HTTP front serves
its registry at /metrics. Nothing here imports the runtime or the fronts: they call in, never the reverse.
"""

from forgetd.server.observe.metrics import MODEL, Metrics
from forgetd.server.observe.sla import SlaState, SlaWatch

__all__ = ["MODEL", "Metrics", "SlaState", "SlaWatch"]
