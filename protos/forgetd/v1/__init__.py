"""Generated gRPC stubs for the forgetd.v1 API (`make stubs` regenerates them from the .proto files here)."""
