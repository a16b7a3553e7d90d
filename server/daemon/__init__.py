"""The daemon's lifecycle: the gRPC server, health and reflection (`create_server`, server.py); who may
connect and call: TLS, mTLS and the bearer token (auth.py)."""
