"""Predicted against measured latency: the device profile's speed-up predictions on real CNN convs.

    python benchmarks/bench_latency.py                 # calibrate now (--budget, default 120 s), then 2 runs
    python benchmarks/bench_latency.py --cached        # the cached profile instead (calibrated now if none)
    python benchmarks/bench_latency.py --threads 1     # torch.set_num_threads(1): the profile key follows
    python benchmarks/bench_latency.py --save out.json # also the raw figures (and the calibration samples)
    python benchmarks/bench_latency.py --strict        # exit status 1 if a target fails

The candidate convs of resnet18, resnet50, vgg16, mobilenet_v2 and mobilenet_v3_large/small (untrained,
batch 1, at 224×224 and at 160×160), one per distinct configuration (44), in both memory formats: each
timed against both of its separable forms (m = 1) with ``latency.measure.measure_layers`` (interleaved
rounds, ``timing.compare``), ``--runs`` times, and predicted by the profile (``predict_forms``). Then
resnet50 and vgg16 end to end (``conversion.endtoend.measure_recommended``), in both formats, before and
after converting (a) the recommended set and (b) the set recommended on time alone (weight energy
ignored: with untrained weights (a) keeps everything for low separability).

Targets (issue 10): median |log error| of the predicted speed-up (original / form time) ≤ 0.15 and ≥ 90%
of the shapes within ±25%; the runs agree per layer within ±15%; neither converted model is slower end to
end. Other processes' CPU load (/proc) is printed beside every figure: on a busy machine the runs' own
disagreement (the "noise floor" line) bounds what any prediction can reach.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import sys
import time
from typing import Any

import torch
import torchvision

import convaudit
from convaudit.analysis.recommend import RecommendOptions, recommend
from convaudit.conversion.endtoend import measure_recommended
from convaudit.latency.builtin import BUILT_IN, LANES, default_profile
from convaudit.latency.cache import current_key, load_profile, save_profile
from convaudit.latency.calibrate import calibrate
from convaudit.latency.clocks import LoadMeter
from convaudit.latency.measure import measure_layers
from convaudit.latency.profile import ConvShape, DeviceProfile, RooflineFit, predict_forms

MODELS = ("resnet18", "resnet50", "vgg16", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small")
RESOLUTIONS = (224, 160)
END_TO_END = ("resnet50", "vgg16")
FORMATS = ("contiguous", "channels_last")
ORDERS = ("dw_pw", "pw_dw")
TARGET_MEDIAN, TARGET_WITHIN, WITHIN, AGREE = 0.15, 0.90, 0.25, 0.15


def shapes(resolutions: tuple[int, ...] = RESOLUTIONS) -> list[Any]:
    """One ConvLayer per distinct candidate configuration of the models, named model@size:layer."""
    seen, layers = set(), []
    for size in resolutions:
        for name in MODELS:
            model = getattr(torchvision.models, name)(weights=None)
            for layer in convaudit.analyze(model, input_shape=(1, 3, size, size)).layers:
                key = (layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding)
                key += (layer.groups, layer.input_shape)
                if layer.candidate and layer.separable and key not in seen:
                    seen.add(key)
                    layers.append(dataclasses.replace(layer, name=f"{name}@{size}:{layer.name}"))
    return layers


def get_profile(args: argparse.Namespace, raw: dict[str, Any]) -> DeviceProfile:
    """The cached profile (--cached), else a calibration now (its samples kept in ``raw`` for --save)."""
    cached = load_profile() if args.cached else None
    if cached is not None:
        print(f"profile: cached ({cached.budget_seconds:g} s budget, load {cached.load or 0:.2f} cores)")
        return cached
    t0 = time.perf_counter()
    samples: list[Any] = []
    profile = calibrate(args.budget, record=samples)
    raw["calibration"] = [dataclasses.asdict(s) for s in samples]  # to refit the built-in profile from
    raw["calibration_load"] = profile.load
    path = save_profile(profile)
    print(f"profile: calibrated now in {time.perf_counter() - t0:.0f} s (load {profile.load or 0:.2f} cores) → {path}")
    return profile


def summary(errors: list[float]) -> tuple[float, float]:
    """(median |log error|, share within ±25%)."""
    return statistics.median(abs(e) for e in errors), sum(abs(math.exp(e) - 1) <= WITHIN for e in errors) / len(errors)


def geo(values: list[float]) -> float:
    return math.exp(statistics.fmean(math.log(v) for v in values))


def measure_all(layers: list[Any], args: argparse.Namespace) -> dict[tuple[str, str], list[dict[str, float]]]:
    """Per (layer, format) per run: medians of each form and the paired speed-ups (original / form)."""
    measured: dict[tuple[str, str], list[dict[str, float]]] = {}
    for run in range(1, args.runs + 1):
        for fmt in args.formats:
            t0 = time.perf_counter()
            got = measure_layers(
                layers,
                memory_format=fmt,
                max_seconds_per_layer=args.seconds_per_layer,
                max_seconds=None,
                target_ci=args.target_ci,
                multipliers={layer.name: 1 for layer in layers},
            )
            load = got.measurement.load
            flagged = sum(1 for v in got.values() if not v.reliable)
            print(
                f"run {run} {fmt:13}: {time.perf_counter() - t0:5.0f} s, other processes' load "
                f"{'n/a' if load is None else f'{load:.2f} cores'}, {flagged} of {len(got)} flagged unreliable"
            )
            for name, lat in got.items():
                ratios = got.comparisons[name].ratios  # medians of the paired per-round ratios, not ratios of medians
                speedups = {f"speedup_{o}": 1 / ratios[o] for o in ORDERS}
                flag = {"reliable": 1.0 if lat.reliable else 0.0}
                measured.setdefault((name, fmt), []).append({**(lat.measured_seconds or {}), **speedups, **flag})
    return measured


def report_shapes(layers: list[Any], measured: dict, profile: DeviceProfile, args: argparse.Namespace) -> bool:
    """The per-shape table and the prediction/agreement summary; True when every target is met."""
    print(
        f"\n{'layer':38} {'format':13} {'orig ms meas/pred':>17} {'dw_pw ms':>15} {'pw_dw ms':>15} "
        f"{'dw_pw × meas/pred':>17} {'pw_dw × meas/pred':>17} {'runs Δ':>6}"
    )
    keys = ("dw_pw", "pw_dw", "default", "built_in", "original", "stem", "body")
    errors: dict[str, list[float]] = {k: [] for k in keys}
    per_format: dict[str, list[float]] = {fmt: [] for fmt in args.formats}
    agree, agree_time, floor, flagged = [], [], [], []
    fallback = default_profile()
    built_in = dataclasses.replace(fallback, fits=built_in_fits())  # BUILT_IN as fitted: the margin taken out
    for layer in layers:
        for fmt in args.formats:
            runs = [r for r in measured.get((layer.name, fmt), []) if all(r.get(f) for f in ("original", *ORDERS))]
            if not runs:
                print(f"{layer.name:38} {fmt:13} not measured")
                continue
            mean = {k: geo([r[k] for r in runs]) for k in runs[0] if k != "reliable"}
            shape = ConvShape.from_layer(layer, fmt)
            pred, pred_default = predict_forms(profile, shape), predict_forms(fallback, shape)
            err = {o: math.log(pred["original"] / pred[o] / mean[f"speedup_{o}"]) for o in ORDERS}
            for o in ORDERS:
                errors[o].append(err[o])
            per_format[fmt].append(err["dw_pw"])
            errors["stem" if layer.in_channels <= 4 else "body"].append(err["dw_pw"])
            errors["default"].append(math.log(pred_default["original"] / pred_default["dw_pw"] / mean["speedup_dw_pw"]))
            fit = predict_forms(built_in, shape)
            errors["built_in"].append(math.log(fit["original"] / fit["dw_pw"] / mean["speedup_dw_pw"]))
            errors["original"].append(math.log(pred["original"] / mean["original"]))
            spread = 0.0
            if len(runs) > 1:
                keys = [f"speedup_{o}" for o in ORDERS]
                spread = max(abs(math.log(r[k] / runs[0][k])) for r in runs[1:] for k in keys)
                time_spread = max(abs(math.log(r[f] / runs[0][f])) for r in runs[1:] for f in ("original", *ORDERS))
                agree.append(spread <= math.log(1 + AGREE))
                flagged.append(not all(r.get("reliable", 1.0) for r in runs))  # unreliable in some run
                agree_time.append(time_spread <= math.log(1 + AGREE))
                floor.append(max(abs(math.log(r["speedup_dw_pw"] / runs[0]["speedup_dw_pw"])) for r in runs[1:]))
            cells = [f"{mean[f] * 1e3:7.3f}/{pred[f] * 1e3:<7.3f}" for f in ("original", *ORDERS)]
            ratios = [f"{mean[f'speedup_{o}']:7.2f}/{pred['original'] / pred[o]:<7.2f}" for o in ORDERS]
            print(
                f"{layer.name:38} {fmt:13} {cells[0]:>17} {cells[1]:>15} {cells[2]:>15} {ratios[0]:>17} "
                f"{ratios[1]:>17} {math.exp(spread) - 1:6.0%}"
            )
    ok = True
    print()
    for order in ORDERS:
        median, within = summary(errors[order])
        hit = median <= TARGET_MEDIAN and within >= TARGET_WITHIN
        ok &= hit or order != "dw_pw"  # the target is the dw_pw rewrite; pw_dw is shown beside it
        print(
            f"predicted {order} speed-up, {len(errors[order])} shapes: median |log error| {median:.3f}"
            f" (target ≤ {TARGET_MEDIAN}), within ±25% {within:.0%} (target ≥ {TARGET_WITHIN:.0%}),"
            f" bias {statistics.median(errors[order]):+.3f}: {'PASS' if hit else 'FAIL'}"
        )
    for label, errs in (*per_format.items(), ("3-channel stems", errors["stem"]), ("bodies", errors["body"])):
        if errs:
            m, w = summary(errs)
            print(f"  dw_pw {label:15}: median |log error| {m:.3f}, within ±25% {w:.0%} ({len(errs)} shapes)")
    m, w = summary(errors["original"])
    print(f"  predicted original time: median |log error| {m:.3f}, within ±25% {w:.0%} (absolute: drifts with load)")
    m, w = summary(errors["default"])
    print(
        f"  the uncalibrated default profile (dw_pw): median |log error| {m:.3f}, within ±25% {w:.0%}, "
        f"bias {statistics.median(errors['default']):+.3f} (conservative: negative)"
    )
    m, w = summary(errors["built_in"])
    print(
        f"  the built-in fit without its margin (dw_pw): median |log error| {m:.3f}, within ±25% {w:.0%}, "
        f"bias {statistics.median(errors['built_in']):+.3f}"
    )
    if agree:
        share, share_time = sum(agree) / len(agree), sum(agree_time) / len(agree_time)
        ok &= share == 1.0
        noise = sum(f <= math.log(1 + WITHIN) for f in floor) / len(floor)
        print(
            f"runs agree within ±15% on {share:.0%} of the shapes (both speed-ups; per-form medians: "
            f"{share_time:.0%}): {'PASS' if share == 1 else 'FAIL'}"
        )
        split = [(a, f) for a, f in zip(agree, flagged, strict=True)]
        caught = sum(f for a, f in split if not a)
        print(
            f"  of the {sum(not a for a, _ in split)} shapes whose runs disagree, {caught} were flagged unreliable in "
            f"a run; of the {sum(a for a, _ in split)} that agree, {sum(f for a, f in split if a)} were"
        )
        print(
            f"noise floor: the runs' own dw_pw speed-ups agree within ±25% on {noise:.0%} of the shapes "
            f"(median disagreement {math.exp(statistics.median(floor)) - 1:.0%}): a prediction cannot do better"
        )
    return ok


def built_in_fits() -> dict[str, dict[str, RooflineFit]]:
    """``BUILT_IN``'s fits as fitted (``default_profile`` slows depthwise and pointwise by its margin)."""
    return {
        fmt: {kind: RooflineFit(*values, lanes=LANES) for kind, values in kinds.items()}
        for fmt, kinds in BUILT_IN.items()
    }


def end_to_end(profile: DeviceProfile, args: argparse.Namespace) -> bool:
    """resnet50 and vgg16 before and after the recommended set and the set recommended on time alone."""
    print()
    ok = True
    x = torch.randn(1, 3, 224, 224)
    time_only = RecommendOptions(min_energy=None)
    for name in END_TO_END:
        model = getattr(torchvision.models, name)(weights=None).eval()
        analysis = convaudit.analyze(model, input_shape=(1, 3, 224, 224), separability=True, latency_profile=profile)
        by_time = dataclasses.replace(
            analysis,
            layers=tuple(
                dataclasses.replace(layer, recommendation=recommend(layer, profile, None, time_only))
                if layer.candidate and layer.separable
                else layer
                for layer in analysis.layers
            ),
        )
        for label, a in (("recommended", analysis), ("recommended on time alone", by_time)):
            meter = LoadMeter()
            meter.start()
            e2e = measure_recommended(model, a, (x,), max_seconds=args.end_to_end_seconds, memory_format="both")
            load = meter.stop()
            if e2e is None:
                kept = sum(1 for layer in a.layers if layer.recommendation and layer.recommendation.action == "keep")
                print(f"{name} {label}: nothing to convert ({kept} candidates kept), the model is unchanged")
                continue
            for fmt, e in (e2e.by_format or {}).items():
                ratio = e.recommended.median_seconds / e.original.median_seconds
                ok &= ratio <= 1.0
                print(
                    f"{name} {label} ({len(e.layers)} layers, {fmt}): {e.original.median_seconds * 1e3:.1f} ms"
                    f" (IQR {e.original.iqr_seconds * 1e3:.1f}) → {e.recommended.median_seconds * 1e3:.1f} ms"
                    f" (IQR {e.recommended.iqr_seconds * 1e3:.1f}), {ratio:.2f}×,"
                    f" {'reliable' if e.reliable else 'UNRELIABLE'}, load {'n/a' if load is None else f'{load:.2f}'}"
                    f" cores: {'PASS' if ratio <= 1.0 else 'FAIL'} (never slower)"
                )
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--cached", action="store_true", help="use the cached profile (default: calibrate now)")
    parser.add_argument("--budget", type=float, default=120.0, help="calibration budget in seconds")
    parser.add_argument("--runs", type=int, default=2, help="measurement runs per layer and format")
    parser.add_argument("--seconds-per-layer", type=float, default=3.0, help="compare's cap per layer")
    parser.add_argument("--target-ci", type=float, default=0.05, help="compare's CI half-width on the ratio")
    parser.add_argument("--end-to-end-seconds", type=float, default=20.0, help="cap per model, set and format")
    parser.add_argument("--formats", nargs="+", default=list(FORMATS), choices=FORMATS)
    parser.add_argument("--resolutions", nargs="+", type=int, default=list(RESOLUTIONS))
    parser.add_argument("--no-end-to-end", action="store_true")
    parser.add_argument("--save", help="write the raw figures (and the calibration samples) to this JSON file")
    parser.add_argument("--strict", action="store_true", help="exit status 1 if a target fails")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    meter = LoadMeter()
    meter.start()
    key = current_key()
    print(f"torch {torch.__version__} · {key[0]} · threads {key[2]} · batch 1 · float32")
    layers = shapes(tuple(args.resolutions))
    print(
        f"{len(layers)} distinct candidate convs × {len(args.formats)} memory formats = "
        f"{len(layers) * len(args.formats)} shapes, each against both separable forms (m = 1)"
    )
    raw: dict[str, Any] = {}
    profile = get_profile(args, raw)
    measured = measure_all(layers, args)
    ok = report_shapes(layers, measured, profile, args)
    if not args.no_end_to_end:
        ok &= end_to_end(profile, args)
    load = meter.stop()
    print(f"\nthe whole run: other processes' load {'n/a' if load is None else f'{load:.2f} cores'} (/proc/stat)")
    if args.save:
        raw["measured"] = [
            {"name": n, "format": f, "shape": dataclasses.asdict(ConvShape.from_layer(layer, f)), "runs": runs}
            for layer in layers
            for (n, f), runs in measured.items()
            if n == layer.name
        ]
        with open(args.save, "w", encoding="utf-8") as out:
            json.dump(raw, out)
    return 1 if args.strict and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
