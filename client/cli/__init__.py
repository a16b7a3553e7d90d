"""The `forgetd` command line: the command table (`main`) and the client's commands."""

from forgetd.client.cli.main import main

__all__ = ["main"]
