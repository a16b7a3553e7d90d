"""The server's commands (`forgetd train`, `forgetd serve`), wired in by client/cli's command table; the
parameter types they share (options.py)."""
