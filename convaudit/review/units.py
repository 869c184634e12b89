"""Budget values read strictly: counts (``4.2G``, ``26M``, ``1.5k``, ``1200``), durations (``30ms``, ``0.03s``)
and shares (``0.25``, ``25%``); anything else is a UsageError saying what, where, and how to write it.

Each parser has a formatter whose output it reads back exactly (``parse_count(format_count(n)) == n``).
Arithmetic is decimal, so ``4.2G`` is 4 200 000 000 and not a float's neighbour of it. Torch-free.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal

from convaudit.errors import UsageError

__all__ = [
    "COUNT_SUFFIXES",
    "format_count",
    "format_seconds",
    "format_share",
    "parse_count",
    "parse_seconds",
    "parse_share",
]

#: Suffix → factor of a count (``m`` is not one: it would read as milli).
COUNT_SUFFIXES: dict[str, int] = {"k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
_SECONDS = {"us": Decimal("1e-6"), "µs": Decimal("1e-6"), "ms": Decimal("1e-3"), "s": Decimal(1)}

_NUMBER = r"(\d+(?:\.\d+)?|\.\d+)"
_COUNT = re.compile(rf"{_NUMBER}\s?([kKMGT]?)")
_DURATION = re.compile(rf"{_NUMBER}\s?(us|µs|ms|s)")
_SHARE = re.compile(rf"{_NUMBER}\s?(%?)")


def _bad(what: str, value: object, where: str, fix: str) -> UsageError:
    return UsageError(f"{where}: {value!r} is not {what}; {fix}")


def _number(value: object) -> Decimal | None:
    """A TOML/Python number as a Decimal (bools are not numbers); None for anything else."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def parse_count(value: object, where: str = "count") -> int:
    """A whole count from ``4.2G``, ``26M``, ``1.5k``, ``1200`` (or a TOML integer); ``where`` names the setting."""
    fix = "write a whole number with an optional k, M, G or T suffix, e.g. 4.2G, 26M, 1.5k or 1200"
    number = _number(value)
    if number is None:
        match = _COUNT.fullmatch(value.strip()) if isinstance(value, str) else None
        if match is None:
            raise _bad("a count", value, where, fix)
        number = Decimal(match.group(1)) * COUNT_SUFFIXES.get(match.group(2), 1)
    if number < 0 or number != number.to_integral_value():
        raise _bad("a whole, non-negative count", value, where, fix)
    return int(number)


def parse_seconds(value: object, where: str = "duration") -> float:
    """Seconds from ``30ms``, ``0.03s``, ``500us``: a unit is required (a bare number could be either)."""
    fix = "write a number with a unit, e.g. 30ms or 0.03s (also us)"
    match = _DURATION.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise _bad("a duration", value, where, fix)
    return float(Decimal(match.group(1)) * _SECONDS[match.group(2)])


def parse_share(value: object, where: str = "share") -> float:
    """A share in [0, 1] from ``0.25``, ``25%`` (or a TOML number)."""
    fix = "write a fraction between 0 and 1 (e.g. 0.25) or a percentage (e.g. 25%)"
    number = _number(value)
    percent = False
    if number is None:
        match = _SHARE.fullmatch(value.strip()) if isinstance(value, str) else None
        if match is None:
            raise _bad("a share", value, where, fix)
        number, percent = Decimal(match.group(1)), bool(match.group(2))
    share = number / 100 if percent else number
    if not 0 <= share <= 1:
        raise _bad("a share between 0 and 1", value, where, fix)
    return float(share)


def format_count(n: int) -> str:
    """4200000000 → '4.2G', 26000000 → '26M', 1234567 → '1234567': the shortest form that reads back exactly."""
    if n < 0:
        raise ValueError(f"counts are non-negative, got {n}")
    best = str(n)
    for suffix in ("k", "M", "G", "T"):
        scaled = Decimal(n) / COUNT_SUFFIXES[suffix]
        if scaled < 1:
            break
        text = f"{_plain(scaled)}{suffix}"
        if len(text) < len(best):
            best = text
    return best


def format_seconds(seconds: float) -> str:
    """0.03 → '30ms', 1.5 → '1.5s': milliseconds below a second; reads back to the same float."""
    if not (math.isfinite(seconds) and seconds >= 0):
        raise ValueError(f"durations are finite and non-negative, got {seconds}")
    exact = Decimal(repr(seconds))
    return f"{_plain(exact * 1000)}ms" if seconds < 1 else f"{_plain(exact)}s"


def format_share(share: float) -> str:
    """0.25 → '25%'; reads back to the same float (decimal arithmetic: the percentage is exact)."""
    if not (math.isfinite(share) and 0 <= share <= 1):
        raise ValueError(f"shares are in [0, 1], got {share}")
    return f"{_plain(Decimal(repr(share)) * 100)}%"


def _plain(d: Decimal) -> str:
    """A Decimal without exponent or trailing zeros: Decimal('4.200') → '4.2', Decimal('3E+1') → '30'."""
    return format(d.normalize(), "f")
