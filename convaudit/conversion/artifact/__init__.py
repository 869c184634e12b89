"""The conversion artifact: a directory with a generated model.py, its weights and the report."""

from convaudit.conversion.artifact.writer import load_converted, write_artifact

__all__ = ["load_converted", "write_artifact"]
