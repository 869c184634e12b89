"""Command line: ``convaudit report`` and ``convaudit convert``."""

from convaudit.cli.app import main

__all__ = ["main"]
