"""The daemon's lifecycle: the gRPC server, health, reflection, auth and TLS (`create_server`)."""
