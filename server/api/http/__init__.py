"""The HTTP front: the Open Inference Protocol's REST form, the unlearning API, the ledger for auditors,
Prometheus metrics and the live dashboard, all on one port (`--http-listen`) in the daemon's process,
over the same runtime and live model as the gRPC front. `app.create_app` builds it; `server.HttpFront` runs it."""
