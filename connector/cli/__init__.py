"""The command line and the composition root: one module per command."""

from connector.cli.main import main

__all__ = ["main"]
