"""Command line: a table of commands (``report``, ``convert``), each in its own module, sharing options.

``app`` holds the table, the parser built from it and :func:`main`; ``shared`` the options every command has.
"""

from convaudit.cli.app import main

__all__ = ["main"]
