"""The `supportrouter` command: one entry point, `main`."""

from router.cli.main import main

__all__ = ["main"]
