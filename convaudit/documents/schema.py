"""The schema version every JSON document carries, and the one way records become plain JSON data."""

from __future__ import annotations

from typing import Any

__all__ = ["SCHEMA_VERSION", "plain"]

#: Bumped on any change a JSON consumer could notice: major for removals/renames, minor for additions.
SCHEMA_VERSION = "1.4"


def plain(value: Any) -> Any:
    """Tuples to lists and vocabulary members to their strings, recursively: exactly what ``json.loads`` gives."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, str) and type(value) is not str:  # a StrEnum member (convaudit.vocab)
        return str(value)
    return value
