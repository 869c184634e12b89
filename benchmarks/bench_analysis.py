"""Benchmark: how fast and how lean is ``convaudit.analyze``?

Prints, in one run:

1. resnet50 @ 1x3x224x224 -- ``convaudit.analyze`` (cold first call, then median of N warm runs)
   beside fvcore's ``FlopCountAnalysis(model, x).total()`` and a plain real forward under
   ``torch.no_grad()``. Target: fvcore / convaudit >= 5x.
2. resnet50 @ 1x3x4096x4096 -- analysis time and peak RSS, measured in a *fresh* child process
   (so nothing this process did inflates the peak). Targets: < 3 s and < 1.5 GB peak RSS.
3. Scaling -- a synthetic deep CNN with 200 convs vs one with 2000 convs.
   Target: t(2000) <= 12 x t(200).
4. Zoo models (timm's mobile nets and the other models the zoo tests use), each at its own input size,
   in eval mode: ``convaudit.analyze(model, x)`` with the default ``AnalysisOptions()`` (no fvcore
   cross-check, no separability SVDs, graph view on) against a bare ``torch.fx.symbolic_trace(model)``
   and a real forward under ``torch.no_grad()``, interleaved in one process; the five slowest by
   analysis / symbolic_trace, and the report's defaults (``cross_check=True, separability=True``) for
   them, timed once. Target: analysis <= 1.5 x symbolic_trace on every model that fx can trace.

Usage (from the repository root)::

    python benchmarks/bench_analysis.py              # 5 timed runs per measurement
    python benchmarks/bench_analysis.py --repeat 9
    python benchmarks/bench_analysis.py --quick      # 2 timed runs, for a fast check
    python benchmarks/bench_analysis.py --strict     # exit status 1 if any target fails
    python benchmarks/bench_analysis.py --threads 1  # torch.set_num_threads(1), also in the child
    python benchmarks/bench_analysis.py --only zoo   # one section (vs-fvcore, 4096, scaling, zoo)

This is a script that prints figures, not a timed test: timings depend on the machine and its load.
"""

from __future__ import annotations

import os
import sys

CHILD_FLAG = "--_child-4096"
if __name__ == "__main__" and CHILD_FLAG in sys.argv[1:] and hasattr(os, "fork"):
    # ru_maxrss is kept across exec: a child that subprocess spawns from a big parent starts out with the
    # *parent's* peak RSS (Linux keeps it in the signal struct). Fork once more from this still-tiny
    # interpreter, before torch is imported: the grandchild starts with fresh accounting and does the work.
    _pid = os.fork()
    if _pid:
        os._exit(os.waitstatus_to_exitcode(os.waitpid(_pid, 0)[1]))

import argparse  # noqa: E402
import functools  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

_PEAK_AT_START = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # before torch is imported (child check)

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torchvision  # noqa: E402

import convaudit  # noqa: E402

# ------------------------------------------------------------------ targets (from the issue)
TARGET_SPEEDUP_VS_FVCORE = 5.0  # fvcore time / convaudit time, at least
TARGET_4096_SECONDS = 3.0  # resnet50 @ 4096x4096, under
TARGET_4096_PEAK_BYTES = int(1.5 * 1000**3)  # "1.5 GB" peak RSS, under (decimal GB; 1.5 GiB would be laxer)
TARGET_SCALING_RATIO = 12.0  # t(2000 convs) / t(200 convs), at most
TARGET_ZOO_RATIO = 1.5  # analysis / bare torch.fx.symbolic_trace of the same model, at most

MIB = 1024**2
SMALL = (1, 3, 224, 224)
LARGE = (1, 3, 4096, 4096)
DEEP_INPUT = (1, 16, 32, 32)


# ------------------------------------------------------------------ helpers


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def timed(fn: Callable[[], object]) -> float:
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def timings(fn: Callable[[], object], repeat: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    return [timed(fn) for _ in range(repeat)]


def interleaved(fns: dict[str, Callable[[], object]], repeat: int) -> dict[str, list[float]]:
    """Time each function ``repeat`` times, round-robin, so that a change of machine load hits all alike."""
    out: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            out[name].append(timed(fn))
    return out


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])


def s(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def resnet50() -> nn.Module:
    return torchvision.models.resnet50(weights=None).eval()


def deep_cnn(n_convs: int, channels: int = 16) -> nn.Module:
    """A Sequential of ``n_convs`` blocks conv3x3 + BatchNorm + ReLU (shape-preserving)."""
    layers: list[nn.Module] = []
    for _ in range(n_convs):
        layers += [
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers).eval()


def header(title: str) -> None:
    print()
    print(title)
    print("=" * len(title))


# ------------------------------------------------------------------ 1. resnet50 @ 224 vs fvcore


def bench_vs_fvcore(repeat: int) -> bool:
    header(f"1. resnet50 @ {'x'.join(map(str, SMALL))}: convaudit vs fvcore vs a real forward")
    model = resnet50()
    x = torch.randn(SMALL)

    with warnings.catch_warnings():  # fvcore's import trips torch.jit.script's deprecation warning
        warnings.simplefilter("ignore")
        from fvcore.nn import FlopCountAnalysis

    logging.getLogger("fvcore").setLevel(logging.ERROR)  # silence "unsupported operator" chatter
    fv_total: list[int] = []

    def ours_fn() -> None:
        convaudit.analyze(model, input_shape=SMALL)

    def fvcore_fn() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fv_total.append(int(FlopCountAnalysis(model, x).total()))

    def forward_fn() -> None:
        with torch.no_grad():
            model(x)

    # convaudit's package namespace may be lazy: time the import behind the first attribute access apart
    start = time.perf_counter()
    convaudit.analyze  # noqa: B018
    import_s = time.perf_counter() - start
    # first calls (each the first of its kind in this process), then the warm runs interleaved
    cold, fv_cold, fw_cold = timed(ours_fn), timed(fvcore_fn), timed(forward_fn)
    runs = interleaved({"ours": ours_fn, "fvcore": fvcore_fn, "forward": forward_fn}, repeat)
    ours, fv, fw = runs["ours"], runs["fvcore"], runs["forward"]
    analysis = convaudit.analyze(model, input_shape=SMALL)

    rows = [
        [
            "convaudit.analyze(model, input_shape=...)",
            s(cold),
            s(statistics.median(ours)),
            s(min(ours)),
            s(max(ours)),
            str(repeat),
        ],
        [
            "fvcore FlopCountAnalysis(model, x).total()",
            s(fv_cold),
            s(statistics.median(fv)),
            s(min(fv)),
            s(max(fv)),
            str(repeat),
        ],
        ["plain forward, torch.no_grad()", s(fw_cold), s(statistics.median(fw)), s(min(fw)), s(max(fw)), str(repeat)],
    ]
    print(
        table(
            [
                "measurement",
                "first call [seconds]",
                "median [seconds]",
                "min [seconds]",
                "max [seconds]",
                "timed runs [count]",
            ],
            rows,
        )
    )
    ratio = statistics.median(fv) / statistics.median(ours)
    ratio_cold = fv_cold / cold
    fwd_ratio = statistics.median(ours) / statistics.median(fw)
    ok = ratio >= TARGET_SPEEDUP_VS_FVCORE
    print()
    print(
        f"speed-up fvcore/convaudit (medians):     {ratio:6.2f} x   "
        f"target >= {TARGET_SPEEDUP_VS_FVCORE:.1f} x   {verdict(ok)}"
    )
    print(
        f"speed-up fvcore/convaudit (first calls): {ratio_cold:6.2f} x   (informational; first access of "
        f"convaudit.analyze, i.e. its lazy imports, took {import_s:.4f} seconds more, not counted above)"
    )
    print(
        f"convaudit / one real forward (medians):  {fwd_ratio:6.2f} x   "
        "(informational; the issue's 'about one forward')"
    )
    print(
        f"MACs: convaudit {analysis.totals.macs:,} [MACs]   fvcore total {fv_total[-1]:,} [fvcore 'flops' = MACs]   "
        f"trace path '{analysis.trace_path}', {len(analysis.layers)} conv layers"
    )
    return ok


# ------------------------------------------------------------------ 2. resnet50 @ 4096, fresh process


def _rss_bytes() -> int:
    """Current resident set size of this process."""
    try:
        import psutil

        return psutil.Process().memory_info().rss
    except ImportError:  # Linux fallback
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_bytes(kib_or_bytes: int | None = None) -> int:
    """Peak RSS of this process so far, from ru_maxrss (KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss if kib_or_bytes is None else kib_or_bytes
    return peak if sys.platform == "darwin" else peak * 1024


def _reset_peak() -> bool:
    """Linux >= 4.0: reset the peak RSS (VmHWM, and with it ru_maxrss) to the current RSS."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def child_4096() -> None:
    """Runs in a fresh interpreter: build resnet50, record the baseline, analyse at 4096x4096, report JSON."""
    t0 = time.perf_counter()
    convaudit.analyze  # noqa: B018  (lazy imports belong to the baseline, not to the analysis)
    import_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    model = resnet50()
    build = time.perf_counter() - t0
    gc.collect()
    baseline_rss, peak_before = _rss_bytes(), _peak_bytes()
    reset = _reset_peak()  # so that the peak read after analyze is the peak *during* analyze
    t0 = time.perf_counter()
    analysis = convaudit.analyze(model, input_shape=LARGE)
    elapsed = time.perf_counter() - t0
    peak_after, rss_after = _peak_bytes(), _rss_bytes()
    t0 = time.perf_counter()
    convaudit.analyze(model, input_shape=LARGE)
    second = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "import_seconds": import_s,
                "build_seconds": build,
                "elapsed_seconds": elapsed,
                "second_call_seconds": second,
                "peak_at_start_bytes": _peak_bytes(_PEAK_AT_START),
                "baseline_rss_bytes": baseline_rss,
                "peak_before_bytes": peak_before,
                "peak_after_bytes": peak_after,
                "peak_was_reset": reset,
                "rss_after_bytes": rss_after,
                "macs": analysis.totals.macs,
                "threads": torch.get_num_threads(),
            }
        )
    )


def bench_4096(repeat: int) -> bool:
    header(f"2. resnet50 @ {'x'.join(map(str, LARGE))}: time and peak RSS (fresh child process)")
    cmd = [sys.executable, str(Path(__file__).resolve()), CHILD_FLAG, "--threads", str(torch.get_num_threads())]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        print(f"child process failed (exit {proc.returncode}):\n{proc.stderr}")
        return False
    r = json.loads(proc.stdout.strip().splitlines()[-1])

    model = resnet50()  # warm timings in this process, for comparison
    warm = timings(lambda: convaudit.analyze(model, input_shape=LARGE), repeat)

    rows = [
        ["analyze, first call in the fresh process", s(r["elapsed_seconds"]), "seconds"],
        ["analyze, second call in the fresh process", s(r["second_call_seconds"]), "seconds"],
        [f"analyze, warm median of {repeat} (this process)", s(statistics.median(warm)), "seconds"],
        ["child: first access of convaudit.analyze (lazy imports)", s(r["import_seconds"]), "seconds"],
        ["child: resnet50 construction (weights=None)", s(r["build_seconds"]), "seconds"],
        ["child: whole process wall time (incl. imports)", s(wall), "seconds"],
    ]
    print(table(["measurement", "value", "unit"], rows))
    print()

    def mem(label: str, b: int) -> list[str]:
        return [label, f"{b / MIB:,.1f}", f"{b:,}"]

    # With the reset, peak_after is the high-water mark of the analyze call alone (it starts at the current
    # RSS); without it, ru_maxrss is monotonic and peak_after is already the process peak.
    process_peak = max(r["peak_before_bytes"], r["peak_after_bytes"], r["baseline_rss_bytes"], r["rss_after_bytes"])
    analyze_peak = r["peak_after_bytes"] if r["peak_was_reset"] else None
    mem_rows = [
        mem("ru_maxrss at child start (before imports; must be small)", r["peak_at_start_bytes"]),
        mem("RSS after all imports + model construction (baseline)", r["baseline_rss_bytes"]),
        mem("peak RSS before analyze (imports + construction)", r["peak_before_bytes"]),
    ]
    if analyze_peak is not None:
        mem_rows.append(mem("peak RSS during analyze (ru_maxrss, reset before)", analyze_peak))
        mem_rows.append(mem("increase: peak during analyze - baseline RSS", analyze_peak - r["baseline_rss_bytes"]))
    else:
        mem_rows.append(
            mem("increase (upper bound): process peak - baseline RSS", process_peak - r["baseline_rss_bytes"])
        )
    mem_rows += [
        mem("RSS after analyze", r["rss_after_bytes"]),
        mem("peak RSS of the whole child process", process_peak),
    ]
    print(table(["memory (child process)", "value [MiB]", "value [bytes]"], mem_rows))
    ok_time = r["elapsed_seconds"] < TARGET_4096_SECONDS
    ok_mem = process_peak < TARGET_4096_PEAK_BYTES
    print()
    print(
        f"time (first call, fresh process): {r['elapsed_seconds']:.4f} seconds   "
        f"target < {TARGET_4096_SECONDS:.1f} seconds   {verdict(ok_time)}"
    )
    print(
        f"peak RSS (whole child process):   {process_peak / MIB:,.1f} MiB ({process_peak / 1000**3:.3f} GB)   "
        f"target < {TARGET_4096_PEAK_BYTES / MIB:,.1f} MiB (1.5 GB)   {verdict(ok_mem)}"
    )
    print(f"MACs at 4096x4096: {r['macs']:,} [MACs]; child torch threads: {r['threads']}")
    return ok_time and ok_mem


# ------------------------------------------------------------------ 3. scaling with depth


def bench_scaling(repeat: int) -> bool:
    header(f"3. Scaling: conv3x3+BN+ReLU stacks, 16 channels, input {'x'.join(map(str, DEEP_INPUT))}")
    models = {n: deep_cnn(n) for n in (200, 2000)}
    fns = {n: (lambda m=m: convaudit.analyze(m, input_shape=DEEP_INPUT)) for n, m in models.items()}
    cold = {n: timed(fn) for n, fn in fns.items()}
    runs = interleaved(fns, repeat)
    rows, medians = [], {}
    for n, model in models.items():
        a = convaudit.analyze(model, input_shape=DEEP_INPUT)
        assert len(a.layers) == n, (len(a.layers), n)
        t = runs[n]
        medians[n] = statistics.median(t)
        rows.append(
            [
                f"{n} convs ({3 * n} modules)",
                s(cold[n]),
                s(medians[n]),
                s(min(t)),
                s(max(t)),
                f"{1000 * medians[n] / n:.3f}",
            ]
        )
    print(
        table(
            [
                "model",
                "first call [seconds]",
                "median [seconds]",
                "min [seconds]",
                "max [seconds]",
                "median per conv [milliseconds]",
            ],
            rows,
        )
    )
    ratio = medians[2000] / medians[200]
    ok = ratio <= TARGET_SCALING_RATIO
    print()
    print(
        f"t(2000 convs) / t(200 convs) (medians): {ratio:6.2f} x   "
        f"target <= {TARGET_SCALING_RATIO:.0f} x (linear = 10 x)   {verdict(ok)}"
    )
    return ok


# ------------------------------------------------------------------ 4. zoo models vs symbolic_trace

#: timm's mobile nets and the other models of the zoo tests (small variants), built as ``convaudit report``
#: builds ``timm:NAME`` / ``torchvision:NAME`` (seeded, untrained, at the model's own input size).
ZOO_MODELS = (
    "timm:mobilenetv3_small_050",
    "timm:mobileone_s0",
    "timm:ghostnetv3_050",
    "timm:efficientvit_m0",
    "timm:mobilenetv4_conv_small",
    "timm:lcnet_050",
    "timm:tf_efficientnet_b0",
    "timm:efficientnet_b0",
    "timm:mixnet_s",
    "timm:regnetx_002",
    "timm:resnet18",
    "timm:convnext_atto",
    "timm:repvgg_a0",
    "timm:nf_resnet26",
    "timm:dla34",
    "torchvision:googlenet",
    "torchvision:inception_v3",
    "torchvision:mobilenet_v3_small",
)
ZOO_QUICK = (
    "timm:mobilenetv3_small_050",
    "timm:mobileone_s0",
    "timm:lcnet_050",
    "timm:tf_efficientnet_b0",
    "timm:nf_resnet26",
    "torchvision:googlenet",
    "torchvision:inception_v3",
)


def _floor_trace(model: nn.Module) -> Callable[[], object] | None:
    """The tracing floor: ``torch.fx.symbolic_trace(model)``; where that fails only because it traces into a
    conv subclass (timm's Conv2dSame), the same with conv modules as leaves (as convaudit traces); None when
    fx cannot trace the model at all (convaudit then takes the hook path)."""
    from convaudit.analysis.adapters import is_conv_module

    class ConvLeaves(torch.fx.Tracer):  # torch.fx.Tracer's own lookups: no speed-ups of convaudit's tracer
        def is_leaf_module(self, m: nn.Module, qualified_name: str) -> bool:
            return is_conv_module(m) or super().is_leaf_module(m, qualified_name)

    def leaves() -> object:
        return torch.fx.GraphModule(model, ConvLeaves().trace(model))

    for fn in (lambda: torch.fx.symbolic_trace(model), leaves):
        try:
            fn()
        except Exception:
            continue
        return fn
    return None


@dataclass
class ZooRow:
    """One zoo model's figures (medians of interleaved rounds; ratios are medians of per-round ratios)."""

    spec: str
    shape: str
    path: str
    analyze: float
    forward: float
    vs_forward: float
    trace: float | None = None  #: None: fx cannot trace the model
    ratio: float | None = None  #: analyze / trace
    report: float | None = None  #: `convaudit report`'s options, timed once (the five slowest only)


def bench_zoo(repeat: int, quick: bool) -> bool:
    header("4. Zoo models: analysis vs a bare torch.fx.symbolic_trace vs a real forward (eval mode)")
    from convaudit.options import AnalysisOptions
    from convaudit.sources.zoo import load_zoo

    options = AnalysisOptions()  # what analyze() does by default: the timed options
    report_options = AnalysisOptions(cross_check=True, separability=True)  # `convaudit report`'s defaults
    print(
        f"timed: convaudit.analyze(model, x) with AnalysisOptions() (cross_check={options.cross_check}, "
        f"separability={options.separability}, graph={options.graph}, timing={options.timing}); "
        f"median of {repeat} interleaved rounds; ratios are medians of per-round ratios"
    )
    rows: list[ZooRow] = []
    built: dict[str, tuple[nn.Module, torch.Tensor]] = {}
    for spec in ZOO_QUICK if quick else ZOO_MODELS:
        zoo = load_zoo(spec)
        model = zoo.model.eval()
        x = torch.randn(zoo.shape or SMALL)
        built[spec] = (model, x)
        floor = _floor_trace(model)

        def ours(model: nn.Module = model, x: torch.Tensor = x) -> object:
            return convaudit.analyze(model, x, options=options)

        def forward(model: nn.Module = model, x: torch.Tensor = x) -> object:
            with torch.no_grad():
                return model(x)

        fns: dict[str, Callable[[], object]] = {"analyze": ours, "forward": forward}
        if floor is not None:
            fns["trace"] = floor
        path = convaudit.analyze(model, x, options=options).trace_path
        forward()
        runs = interleaved(fns, repeat)
        row = ZooRow(
            spec,
            "x".join(map(str, x.shape)),
            str(path),
            statistics.median(runs["analyze"]),
            statistics.median(runs["forward"]),
            statistics.median(a / f for a, f in zip(runs["analyze"], runs["forward"], strict=True)),
        )
        if floor is not None:
            row.trace = statistics.median(runs["trace"])
            row.ratio = statistics.median(a / t for a, t in zip(runs["analyze"], runs["trace"], strict=True))
        rows.append(row)
        print(f"  {spec}: analysis / symbolic_trace {_x(row.ratio)} ({path} path)", flush=True)

    traced = sorted((row for row in rows if row.ratio is not None), key=lambda row: -(row.ratio or 0.0))
    untraceable = [row for row in rows if row.ratio is None]
    table_rows = []
    for row in traced[:5] + untraceable:
        row.report = timed(functools.partial(convaudit.analyze, *built[row.spec], options=report_options))
        cells = [row.spec, row.shape, row.path, s(row.analyze), s(row.trace), s(row.forward), _x(row.ratio)]
        table_rows.append([*cells, _x(row.vs_forward), s(row.report)])
    print()
    print(
        table(
            [
                "five slowest (analysis / trace), untraceable",
                "input",
                "path",
                "analyze [seconds]",
                "symbolic_trace [seconds]",
                "forward [seconds]",
                "analyze / trace",
                "analyze / forward",
                "report defaults, once [seconds]",
            ],
            table_rows,
        )
    )
    missed = [row for row in traced if (row.ratio or 0.0) > TARGET_ZOO_RATIO]
    worst = traced[0] if traced else None
    print()
    print(
        f"analysis / symbolic_trace, worst of {len(traced)}: {_x(worst.ratio if worst else None)} "
        f"({worst.spec if worst else '-'})   target <= {TARGET_ZOO_RATIO:.1f} x on every model   {verdict(not missed)}"
    )
    if missed:
        print("above target: " + ", ".join(f"{row.spec} {_x(row.ratio)}" for row in missed))
    if untraceable:
        print(
            "not traceable by fx (analysed on the hook path, a fake-tensor forward; no symbolic_trace to compare "
            "with): " + ", ".join(row.spec for row in untraceable)
        )
    print(
        "'symbolic_trace': torch.fx.symbolic_trace(model), or where it fails only inside a conv subclass (timm's "
        "Conv2dSame) a torch.fx.Tracer with conv modules as leaves; 'report defaults' adds convaudit report's "
        "cross_check=True (fvcore on a real forward) and separability=True (an SVD per candidate)"
    )
    return not missed


def _x(ratio: object) -> str:
    return f"{ratio:.2f} x" if isinstance(ratio, float) else "-"


# ------------------------------------------------------------------ main


class CpuContention:
    """CPU time other processes used while this benchmark ran (Linux /proc/stat), in average busy CPUs."""

    def __init__(self) -> None:
        self.start = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float, float] | None:
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        busy = (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # minus idle and iowait
        t = os.times()
        return time.monotonic(), busy, t.user + t.system + t.children_user + t.children_system

    def others(self) -> float | None:
        end = self._sample()
        if self.start is None or end is None or end[0] <= self.start[0]:
            return None
        other_cpu = (end[1] - self.start[1]) - (end[2] - self.start[2])
        return max(0.0, other_cpu) / (end[0] - self.start[0])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="timed runs per measurement, median reported (default 5; 2 with --quick)",
    )
    p.add_argument(
        "--quick", action="store_true", help="fewer timed runs (2 unless --repeat is given), for a fast check"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads(N) here and in the child (default: torch's own)",
    )
    p.add_argument("--strict", action="store_true", help="exit with status 1 when any target fails")
    p.add_argument(
        "--only",
        choices=["vs-fvcore", "4096", "scaling", "zoo"],
        action="append",
        help="run only this section (repeatable; default: all)",
    )
    p.add_argument(CHILD_FLAG, dest="child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.child:
        child_4096()
        return 0
    repeat = args.repeat if args.repeat is not None else (2 if args.quick else 5)
    if repeat < 1:
        p.error("--repeat must be at least 1")

    print("convaudit analysis benchmark")
    print(
        f"convaudit {convaudit.__version__}, torch {torch.__version__}, torchvision {torchvision.__version__}, "
        f"python {sys.version.split()[0]}, {sys.platform}"
    )
    print(
        f"torch.get_num_threads() = {torch.get_num_threads()}; os.cpu_count() = {os.cpu_count()}; "
        f"timed runs per measurement = {repeat} (after the first call, interleaved){' [--quick]' if args.quick else ''}"
    )
    contention = CpuContention()

    sections: dict[str, tuple[str, Callable[[], bool]]] = {
        "vs-fvcore": ("resnet50 224: >= 5x faster than fvcore", lambda: bench_vs_fvcore(repeat)),
        "4096": ("resnet50 4096: < 3 s and < 1.5 GB peak RSS", lambda: bench_4096(repeat)),
        "scaling": ("scaling 2000 vs 200 convs: <= 12x", lambda: bench_scaling(repeat)),
        "zoo": ("zoo models: analysis <= 1.5x symbolic_trace", lambda: bench_zoo(repeat, args.quick)),
    }
    results = {title: run() for key, (title, run) in sections.items() if not args.only or key in args.only}
    header("Summary")
    for name, ok in results.items():
        print(f"{verdict(ok)}  {name}")
    others = contention.others()
    if others is not None:
        print(
            f"other processes kept {others:.2f} CPUs busy on average during this run [CPUs] "
            f"(of {os.cpu_count()}; measured from /proc/stat minus this process and its child)"
        )
        if others > 0.25:
            print(
                "WARNING: the machine was busy: multi-threaded compute (the real forward, fvcore, and any real "
                "linear algebra inside analyze) slows down far more than pure Python; rerun on a quiet machine "
                "before trusting the ratios."
            )
    return 1 if args.strict and not all(results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
