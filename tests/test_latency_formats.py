"""The latency records in both memory formats, the never-slower guard, and the table cells the renderers share."""

from __future__ import annotations

import dataclasses
import json

import pytest

from convaudit.documents.latency import (
    EndToEnd,
    LayerLatency,
    Spread,
    end_to_end_from_dict,
    end_to_end_to_dict,
    latency_from_dict,
)
from convaudit.documents.schema import plain
from convaudit.formats.latency import COLUMNS, LatencyRow, cells, slower_text


def e2e(before: float, after: float, reliable: bool = True, fmt: str | None = "contiguous") -> EndToEnd:
    return EndToEnd(Spread(before, before / 20, 12), Spread(after, after / 20, 12), reliable, ("a", "b"), fmt)


def test_a_1_3_latency_record_still_reads() -> None:
    doc = {
        "predicted_seconds": {"original": 2e-3, "dw_pw": 1e-3, "pw_dw": 1.5e-3},
        "measured_seconds": None,
        "measured_spread": None,
        "reliable": None,
        "memory_format": "contiguous",
    }
    assert latency_from_dict(doc) == LayerLatency(doc["predicted_seconds"], None, None, None, "contiguous")
    old = end_to_end_to_dict(e2e(2e-2, 1e-2, fmt=None))
    assert set(old) == {"original", "recommended", "reliable", "layers"}  # the 1.3 fields, nothing more
    assert end_to_end_from_dict(old) == e2e(2e-2, 1e-2, fmt=None)


def test_both_formats_round_trip_through_json() -> None:
    per = {
        fmt: LayerLatency(
            {"original": t, "dw_pw": t / 3}, {"original": t, "dw_pw": t / 2}, {"original": 0.0}, True, fmt
        )
        for fmt, t in (("contiguous", 2e-3), ("channels_last", 1e-3))
    }
    lat = dataclasses.replace(per["contiguous"], by_format=per)
    doc = json.loads(json.dumps(plain(dataclasses.asdict(lat))))
    assert doc["measured_seconds"] == {"original": 2e-3, "dw_pw": 1e-3}  # the 1.3 fields keep their meaning
    assert latency_from_dict(doc) == lat
    whole = dataclasses.replace(
        e2e(2e-2, 1e-2),
        by_format={"contiguous": e2e(2e-2, 1e-2), "channels_last": e2e(3e-2, 4e-2, fmt="channels_last")},
    )
    assert end_to_end_from_dict(json.loads(json.dumps(end_to_end_to_dict(whole)))) == whole


@pytest.mark.parametrize(
    "after,reliable,expected",
    [
        (1e-2, True, None),
        (2e-2, True, None),  # equal is not slower
        (3e-2, True, "SLOWER: the recommended set takes 1.50× the original's time end to end in contiguous"),
        (3e-2, False, "measured 1.50× the original's time end to end in contiguous, but the measurement is unreliable"),
    ],
)
def test_the_never_slower_guard(after: float, reliable: bool, expected: str | None) -> None:
    text = slower_text(e2e(2e-2, after, reliable))
    assert (text if text is None else text.split(";")[0]) == expected


def test_cells_show_every_column_and_the_other_format() -> None:
    row = LatencyRow(
        "layer1.0.conv1",
        "convert",
        "dw_pw",
        1,
        "predicted 2.00× faster",
        0.2,
        0.5,
        0.5,
        0.4,
        (2.0, 1.0),
        (2.0, 0.8),
        (0.1, 0.05),
        True,
        None,
        (("channels_last", 0.45, 0.6, False),),
    )
    shown = cells(row)
    assert list(shown) == [key for key, _ in COLUMNS]
    assert shown["predicted"] == "0.50×" and shown["energy"] == "—" and shown["macs"] == "0.20×"
    assert shown["measured"] == "0.40× (2.000 ±0.100 → 0.800 ±0.050 ms); channels_last 0.60× unreliable"
