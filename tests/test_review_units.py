"""Budget values read strictly: what is written back reads the same; anything else is one clear UsageError."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from convaudit.errors import UsageError
from convaudit.review.units import (
    format_count,
    format_seconds,
    format_share,
    parse_count,
    parse_seconds,
    parse_share,
)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("4.2G", 4_200_000_000),
        ("26M", 26_000_000),
        ("1.5k", 1_500),
        ("1.5K", 1_500),
        ("1200", 1_200),
        ("0", 0),
        ("2T", 2 * 10**12),
        (" 26 M ", 26_000_000),
        (4_200, 4_200),  # a TOML integer
        (4.2e9, 4_200_000_000),  # a TOML float that is whole
    ],
)
def test_counts(text: object, expected: int) -> None:
    assert parse_count(text) == expected


@pytest.mark.parametrize(
    "text,expected",
    [("30ms", 0.03), ("0.03s", 0.03), ("500us", 0.0005), ("500µs", 0.0005), ("2s", 2.0), ("1.5 ms", 0.0015)],
)
def test_durations(text: str, expected: float) -> None:
    assert parse_seconds(text) == pytest.approx(expected, rel=1e-15)


@pytest.mark.parametrize("text,expected", [("25%", 0.25), ("0.25", 0.25), ("100%", 1.0), (0.5, 0.5), (1, 1.0)])
def test_shares(text: object, expected: float) -> None:
    assert parse_share(text) == expected


@pytest.mark.parametrize(
    "parse,value",
    [
        (parse_count, "4.2g"),  # suffixes are case-exact: g is not G
        (parse_count, "26m"),  # m would read as milli
        (parse_count, "1.2345k"),  # not a whole count
        (parse_count, "-5"),
        (parse_count, "4.2 GB"),
        (parse_count, "1e9"),
        (parse_count, ""),
        (parse_count, True),
        (parse_count, 1.5),
        (parse_seconds, "30"),  # a duration needs its unit
        (parse_seconds, 0.03),
        (parse_seconds, "30 min"),
        (parse_seconds, "-1ms"),
        (parse_share, "125%"),
        (parse_share, "1.5"),  # a share over 1: 1.5%? 150%? refused
        (parse_share, "25 percent"),
        (parse_share, float("nan")),
    ],
)
def test_garbage_is_one_clear_line(parse, value: object) -> None:
    with pytest.raises(UsageError) as info:
        parse(value, "--max-x")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("--max-x: ")  # where
    assert repr(value) in message  # what
    assert "e.g." in message  # how to fix it


@given(st.integers(min_value=0, max_value=10**15))
def test_count_round_trips(n: int) -> None:
    text = format_count(n)
    assert parse_count(text) == n
    assert len(text) <= len(str(n))


@given(st.floats(min_value=0, max_value=1e4, allow_nan=False, allow_infinity=False))
def test_seconds_round_trip(seconds: float) -> None:
    assert parse_seconds(format_seconds(seconds)) == seconds


@given(st.floats(min_value=0, max_value=1, allow_nan=False))
def test_share_round_trips(share: float) -> None:
    assert parse_share(format_share(share)) == share


@given(st.text(alphabet="0123456789.kKMGTmgsu%µ -e", max_size=8))
def test_anything_else_is_refused_not_guessed(text: str) -> None:
    """A string parses only when it has the documented shape; otherwise it is a UsageError, never a crash."""
    for parse in (parse_count, parse_seconds, parse_share):
        try:
            value = parse(text)
        except UsageError:
            continue
        stripped = text.strip()
        assert stripped[0].isdigit() or stripped[0] == "."
        assert value >= 0


def test_the_examples_read_as_the_issue_writes_them() -> None:
    assert format_count(4_200_000_000) == "4.2G"
    assert format_count(26_000_000) == "26M"
    assert format_seconds(0.03) == "30ms"
    assert format_share(0.25) == "25%"
