"""Measured time: stand-ins built from the layer's configuration, timed against each other; the model is not run."""

from __future__ import annotations

import dataclasses
import importlib
import json
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn as nn

import convaudit
from convaudit.documents.latency import LayerLatency
from convaudit.documents.records import Analysis
from convaudit.errors import UsageError
from convaudit.formats import render
from convaudit.formats.latency import latency_rows
from convaudit.latency.measure import (
    SWEEPS,
    measure,
    measure_end_to_end,
    measure_layers,
)
from convaudit.latency.standins import MAX_INPUT_BYTES
from tests.fixtures import nets

measure_module = importlib.import_module("convaudit.latency.measure")  # the package exports measure() by that name


TICK = 2**-9  #: ~2 ms, exact in binary


class TickClock:
    """Every reading advances one tick: every batch reads exactly one tick, whatever the real time."""

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        self.t += TICK
        return self.t


class NoLoad:
    def start(self) -> None:
        pass

    def stop(self) -> float | None:
        return 0.0


def candidates(model: nn.Module, shape: tuple[int, ...]) -> list[Any]:
    return list(convaudit.analyze(model, input_shape=shape).candidates)


MIXED = nn.Sequential(
    nn.Conv2d(8, 32, 3, padding=1),
    nn.Conv2d(32, 64, 3, stride=2, groups=4, bias=False),
    nn.Conv2d(64, 48, 3, dilation=2, padding=2, padding_mode="reflect"),
    nn.Conv2d(48, 16, (1, 5), padding=(0, 2)),
)
CASES = [(MIXED, (1, 8, 20, 20)), (nn.Conv1d(6, 12, 5, stride=2), (2, 6, 40)), (nn.Conv3d(4, 8, 3), (1, 4, 6, 7, 8))]


def test_layers_are_timed_interleaved_on_the_clock_in_eval_and_no_grad(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[bool, bool, bool]] = []
    real_compare, real_stand_ins = measure_module.compare, measure_module.stand_ins
    built: list[nn.Module] = []

    def spy_stand_ins(*args: Any, **kwargs: Any) -> dict[str, nn.Module]:
        modules = real_stand_ins(*args, **kwargs)
        built.extend(modules.values())
        return modules

    def spy_compare(fns: dict[str, Callable[[], Any]], **kwargs: Any) -> Any:
        y = fns["dw_pw"]()
        seen.append((torch.is_grad_enabled(), y.requires_grad, any(m.training for m in built)))
        return real_compare(fns, **kwargs)

    monkeypatch.setattr(measure_module, "compare", spy_compare)
    monkeypatch.setattr(measure_module, "stand_ins", spy_stand_ins)
    layers = candidates(MIXED, (1, 8, 20, 20))
    done: list[tuple[int, int]] = []
    found = measure_layers(layers, clock=TickClock(), load_meter=NoLoad, progress=lambda d, t: done.append((d, t)))
    assert seen == [(False, False, False)] * 4 * SWEEPS  # each layer once per sweep
    assert list(found) == [layer.name for layer in layers] and done == [(i, 4 * SWEEPS) for i in range(1, 13)]
    for lat in found.values():
        # every batch reads one tick of one call: the harness's figures, not the machine's
        assert dataclasses.replace(lat, measured_ci=None) == LayerLatency(
            None,
            dict.fromkeys(("original", "dw_pw", "pw_dw"), TICK),
            dict.fromkeys(("original", "dw_pw", "pw_dw"), 0.0),
            True,
            "contiguous",
        )
        assert lat.measured_ci == dict.fromkeys(("dw_pw", "pw_dw"), (1.0, 1.0))  # each ratio's CI, here exact
    # the CI's first possible size per sweep, pooled over the sweeps
    assert all(c.spreads["original"].runs == 6 * SWEEPS for c in found.comparisons.values())
    assert found.measurement.unreliable_reasons == () and found.measurement.load == 0.0
    assert found.measurement.threads == torch.get_num_threads()


def test_memory_format_threads_and_forms() -> None:
    layers = candidates(MIXED, (1, 8, 20, 20)) + candidates(nn.Conv1d(6, 12, 5), (1, 6, 30))
    before = torch.get_num_threads()
    found = measure_layers(
        layers, memory_format="channels_last", forms=("dw_pw",), threads=1, clock=TickClock(), load_meter=NoLoad
    )
    assert torch.get_num_threads() == before and found.measurement.threads == 1
    assert found.measurement.memory_format == "channels_last"
    formats = [lat.memory_format for lat in found.values()]
    assert formats == ["channels_last"] * 4 + ["contiguous"]  # 1-d convs have no channels_last
    assert all(set(lat.measured_seconds or {}) == {"original", "dw_pw"} for lat in found.values())
    with pytest.raises(UsageError, match="memory_format"):
        measure_layers(layers, memory_format="nhwc")


class Busy(NoLoad):
    def stop(self) -> float | None:
        return 1.5


def test_a_busy_machine_flags_the_run_and_its_layers() -> None:
    layers = candidates(MIXED, (1, 8, 20, 20))[:2]
    found = measure_layers(layers, threads=2, clock=TickClock(), load_meter=Busy)
    assert found.measurement.load == 1.5 and not any(lat.reliable for lat in found.values())
    assert found.measurement.unreliable_reasons[0] == (
        "other processes used 1.5 CPU cores during the run; with 2 threads, times are more repeatable with 1"
    )
    assert found.measurement.unreliable_reasons[1] == "0: other processes used 1.5 CPU cores during the run"


def test_the_per_layer_and_whole_run_caps() -> None:
    layers = candidates(MIXED, (1, 8, 20, 20))
    clock = TickClock()
    found = measure_layers(layers, max_seconds_per_layer=1.0, max_seconds=0.05, clock=clock, load_meter=NoLoad)
    assert set(found) | set(found.skipped) == {layer.name for layer in layers} and found and found.skipped
    assert all(why == "the whole-run cap of 0.05 s was used up" for why in found.skipped.values())
    assert all(lat.reliable is False for lat in found.values())  # cut short: flagged, never shown as a fact
    assert clock.t < 0.05 + 0.06  # one layer's warm-up of overshoot at most
    assert any("not measured" in r for r in found.measurement.unreliable_reasons)
    capped = measure_layers(layers[:1], max_seconds_per_layer=0.01, clock=TickClock(), load_meter=NoLoad)
    (c,) = capped.comparisons.values()
    assert not c.reliable and "not within ±10%" in c.reasons[0]


def test_sweeps_spread_each_layer_over_the_run_and_pool_it(monkeypatch: pytest.MonkeyPatch) -> None:
    layers = candidates(MIXED, (1, 8, 20, 20))[:2]
    order: list[str] = []
    real_compare = measure_module.compare

    def spy_compare(fns: dict[str, Callable[[], Any]], **kwargs: Any) -> Any:
        order.append(str(kwargs["max_seconds"]))
        return real_compare(fns, **kwargs)

    monkeypatch.setattr(measure_module, "compare", spy_compare)
    real_time = measure_module._time_layer
    names: list[str] = []

    def spy_time(layer: Any, *args: Any, **kwargs: Any) -> Any:
        names.append(layer.name)
        return real_time(layer, *args, **kwargs)

    monkeypatch.setattr(measure_module, "_time_layer", spy_time)
    found = measure_layers(
        layers, sweeps=3, max_seconds_per_layer=0.9, max_seconds=None, clock=TickClock(), load_meter=NoLoad
    )
    first, second = (layer.name for layer in layers)
    assert names == [first, second] * 3  # sweep after sweep over all the layers, not one layer at a time
    assert order == ["0.3"] * 6  # each sweep gets its share of the per-layer cap
    for c in found.comparisons.values():
        assert c.rounds is not None and c.spreads["original"].runs == len(c.rounds.per_call["original"]) == 18
    one = measure_layers(layers, sweeps=1, clock=TickClock(), load_meter=NoLoad)
    assert all(c.spreads["original"].runs == 6 for c in one.comparisons.values())


class _Advancing:
    """A clock that advances only when the fake calls below run."""

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t


def test_layers_whose_sweeps_disagree_get_more_while_their_cap_lasts(monkeypatch: pytest.MonkeyPatch) -> None:
    """One layer's dw_pw form runs at 2x the conv's time in even sweeps and 3x in odd ones (a drifting machine);
    the other's at 2x throughout. Only the drifting one gets sweeps beyond the first three, and is flagged."""
    from convaudit.latency.timing import compare

    layers = candidates(MIXED, (1, 8, 20, 20))[:2]
    steady, drifting = (layer.name for layer in layers)
    timed: list[str] = []

    def fake_time(
        layer: Any,
        m: Any,
        forms: Any,
        fmt: str,
        device: str,
        budget: float,
        target_ci: float,
        *rest: Any,
        seed: int = 0,
    ) -> Any:
        timed.append(layer.name)
        clock = _Advancing()

        def takes(seconds: float) -> Callable[[], None]:
            def call() -> None:
                clock.t += seconds

            return call

        slow = 3e-3 if layer.name == drifting and seed % 2 else 2e-3
        fns = {"original": takes(1e-3), "dw_pw": takes(slow), "pw_dw": takes(1.5e-3)}
        return compare(
            fns, baseline="original", target_ci=target_ci, max_seconds=budget, clock=clock, load=NoLoad()
        ), fmt

    monkeypatch.setattr(measure_module, "_time_layer", fake_time)
    steps: list[tuple[int, int]] = []

    def run(cap: float) -> Any:
        return measure_layers(
            layers,
            sweeps=3,
            max_sweeps=8,
            max_seconds_per_layer=cap,
            max_seconds=None,
            clock=TickClock(),
            load_meter=NoLoad,
            progress=lambda done, total: steps.append((done, total)),
        )

    found = run(1.0)
    assert timed.count(steady) == 3 and timed.count(drifting) == 8
    assert steps == [(i, 6) for i in range(1, 7)] + [(6 + i, 6 + i) for i in range(1, 6)]  # the bar grows with them
    assert found[steady].reliable and not found[drifting].reliable
    assert any("8 sweeps' median ratios disagree" in r for r in found.measurement.unreliable_reasons)
    lo, hi = found.comparisons[drifting].ci["dw_pw"]
    assert lo < 2.2 and hi > 2.8  # the interval spans the drift
    timed.clear()  # a per-layer cap that three sweeps nearly use up leaves room for few more
    run(0.2)
    assert timed.count(steady) == 3 and 3 <= timed.count(drifting) < 8


def test_a_layer_cut_from_a_later_sweep_keeps_the_sweeps_it_had() -> None:
    layers = candidates(MIXED, (1, 8, 20, 20))[:2]
    found = measure_layers(
        layers, sweeps=3, max_seconds_per_layer=0.9, max_seconds=0.2, clock=TickClock(), load_meter=NoLoad
    )
    assert set(found) == {layer.name for layer in layers} and not found.skipped  # each timed in the first sweep
    assert all(0 < c.spreads["original"].runs < 18 for c in found.comparisons.values())


def test_large_tensors_are_skipped_with_a_reason() -> None:
    (big,) = candidates(nets.Seed64(), (4, 64, 2048, 2048))  # 4 GiB input
    assert MAX_INPUT_BYTES < 4 * 64 * 2048 * 2048 * 4
    found = measure_layers([big], clock=TickClock(), load_meter=NoLoad)
    assert not found and found.skipped == {"conv": "its input of 4096 MiB exceeds the 512 MiB memory guard"}
    assert found.measurement.unreliable_reasons == ("conv: not measured: " + found.skipped["conv"],)
    (wide,) = candidates(nets.Seed64(), (1, 64, 512, 512))  # 64 MiB, but m = 9 makes a 576 MiB intermediate
    found = measure_layers([wide], multipliers={"conv": 9}, clock=TickClock(), load_meter=NoLoad)
    assert found.skipped["conv"].startswith("its dw_pw intermediate of 576 MiB")


def test_end_to_end_leaves_the_models_as_found() -> None:
    torch.manual_seed(0)
    a = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8)).train()
    b = nn.Sequential(nn.Conv2d(3, 8, 1), nn.BatchNorm2d(8))
    b[1].eval()
    states = [{k: v.clone() for k, v in m.state_dict().items()} for m in (a, b)]
    x = torch.randn(2, 3, 16, 16)
    original, converted, reliable = measure_end_to_end(a, b, (x,), clock=TickClock(), load=NoLoad())
    assert original.median_seconds == TICK and converted.runs == 6 and reliable
    assert a.training and a[1].training and b.training and not b[1].training
    for m, state in zip((a, b), states, strict=True):
        assert all(torch.equal(v, state[k]) for k, v in m.state_dict().items())  # BatchNorm stats untouched


def test_the_1_2_timing_still_works_and_the_model_is_not_run() -> None:
    model = nn.Sequential(nn.Conv2d(8, 32, 3, padding=1), nn.Conv2d(32, 32, 1), nn.Conv2d(32, 32, 3, padding=1))
    calls = []
    model.register_forward_hook(lambda *a: calls.append(1))
    a = convaudit.analyze(model, input_shape=(1, 8, 16, 16), timing=True, timing_seconds=0.3)
    assert not calls
    t = a.timing
    assert t.threads >= 1 and t.repeats >= 1 and [x.name for x in t.layers] == ["0", "2"]
    for x, layer in zip(t.layers, a.candidates, strict=True):
        assert x.seconds > 0 and x.seconds_dw_pw > 0
        assert x.speedup_measured == pytest.approx(x.seconds / x.seconds_dw_pw)
        assert x.speedup_predicted == pytest.approx(layer.macs / layer.separable.dw_pw.macs)
    (skipped,) = measure(candidates(nets.Seed64(), (4, 64, 2048, 2048))).layers
    assert skipped.seconds is None and "memory guard" in (skipped.skipped or "")


def test_a_measured_analysis_round_trips_and_states_how_it_was_measured() -> None:
    a = convaudit.analyze(nets.Seed64(), input_shape=(1, 64, 16, 16), timing=True, timing_seconds=0.3)
    assert Analysis.from_dict(json.loads(render(a, "json"))) == a
    m = a.measurement
    assert m is not None and m.threads == a.timing.threads >= 1 and m.memory_format == "contiguous"
    assert f"measured on cpu ({m.threads} threads, contiguous" in render(a, "text")


def test_both_memory_formats_in_one_run() -> None:
    layers = candidates(MIXED, (1, 8, 20, 20)) + candidates(nn.Conv1d(6, 12, 5), (1, 6, 30))
    found = measure_layers(layers, memory_format="both", clock=TickClock(), load_meter=NoLoad)
    assert found.measurement.memory_format == "contiguous, channels_last"
    assert list(found) == [layer.name for layer in layers]
    for name, lat in found.items():
        # the record's own figures are contiguous (what recommendations are decided on), both in by_format
        assert lat.memory_format == "contiguous" and list(lat.by_format or {}) == ["contiguous", "channels_last"]
        assert (lat.by_format or {})["contiguous"] == dataclasses.replace(lat, by_format=None)
        assert found.by_format["contiguous"][name] is found.comparisons[name]
        assert found.by_format["channels_last"][name].spreads["original"].runs == 6 * SWEEPS
    used = [(lat.by_format or {})["channels_last"].memory_format for lat in found.values()]
    assert used == ["channels_last"] * 4 + ["contiguous"]  # 1-d convs have no channels_last


def test_both_formats_through_the_analysis_and_its_json() -> None:
    a = convaudit.analyze(
        nets.Seed64(), input_shape=(1, 64, 16, 16), timing=True, timing_seconds=0.2, memory_format="both"
    )
    assert Analysis.from_dict(json.loads(render(a, "json"))) == a
    (layer,) = a.candidates
    lat = layer.latency
    assert lat is not None and lat.by_format is not None and set(lat.by_format) == {"contiguous", "channels_last"}
    for fmt, figures in lat.by_format.items():
        assert figures.predicted_seconds and figures.measured_seconds and figures.by_format is None, fmt
    assert lat.predicted_seconds == lat.by_format["contiguous"].predicted_seconds  # decided on contiguous
    assert a.measurement is not None and a.measurement.memory_format == "contiguous, channels_last"
    (row,) = latency_rows(a)
    assert [fmt for fmt, *_ in row.other_formats] == ["channels_last"] and "; channels_last " in row.measured_text
    assert "; channels\\_last " in render(a, "markdown")  # the other format beside; Markdown escapes the underscore
    plain = convaudit.analyze(nets.Seed64(), input_shape=(1, 64, 16, 16), memory_format="both").candidates[0]
    assert plain.latency is not None and plain.latency.by_format is not None  # predicted in both, nothing measured
    assert all(f.measured_seconds is None for f in plain.latency.by_format.values())
