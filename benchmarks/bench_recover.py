"""Benchmark: does label-free recovery bring a cheap conversion of a trained CNN back, and how fast?

The digits CNN of ``examples/digits_experiment.py`` (trained as it does, on scikit-learn's bundled digits),
converted at m = 1 with the 1-channel stem kept standard (``exclude=["conv1"]``, ≈0.136× the MACs). Prints,
in one run, the test accuracy and the wall and CPU time of each way back:

- training-free (``convaudit.convert``, init svd);
- BatchNorm re-estimation (on the experiment's calibration batches, as ``--recalibrate-bn`` does);
- label-free recovery (``convaudit.recover``: the training images *without labels* as inputs, a quarter of
  them held out for the fidelity figures; default stages and budget unless ``--steps``/``--seconds``);
- the experiment's labelled fine-tuning (100 steps, Adam 1e-3, cross-entropy on the labels).

Target: label-free recovery ≥ 0.97 test accuracy in ≤ 2 minutes of CPU, matching labelled fine-tuning.

Usage (from the repository root)::

    python benchmarks/bench_recover.py                 # the default recovery budget
    python benchmarks/bench_recover.py --steps 400     # a smaller budget
    python benchmarks/bench_recover.py --seconds 60    # a time budget
    python benchmarks/bench_recover.py --strict        # exit status 1 if the target fails

One thread by default (``--threads``): the model is too small to gain from more, and on a shared machine
more threads mostly wait for each other.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # run from a checkout without installing

import torch  # noqa: E402

import convaudit  # noqa: E402

TARGET_ACCURACY = 0.97
TARGET_CPU_SECONDS = 120.0


def digits_experiment() -> ModuleType:
    """examples/digits_experiment.py, imported (its functions are reused, not copied)."""
    spec = importlib.util.spec_from_file_location("digits_experiment", REPO / "examples" / "digits_experiment.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """(result, wall seconds, CPU seconds of this process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=None, help="recovery step budget (default: recover's default)")
    p.add_argument("--seconds", type=float, default=None, help="recovery time budget in seconds")
    p.add_argument("--seed", type=int, default=0, help="recovery seed (default 0)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--strict", action="store_true", help="exit status 1 if the target fails")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    dx = digits_experiment()
    torch.manual_seed(dx.SEED)
    data = dx.load_data()
    print(
        f"digits: {len(data.y_train)} train / {len(data.y_test)} test images; torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s)"
    )

    model = dx.build_model()
    steps_per_epoch = -(-len(data.y_train) // dx.BATCH)
    _, wall, _ = timed(lambda: dx.train(model, data, 10 * steps_per_epoch, lr=3e-3, seed=dx.SEED))
    original = dx.accuracy(model, data.x_test, data.y_test)
    print(f"original DigitsCNN: trained 10 epochs in {wall:.1f} s, test accuracy {original:.4f}")

    conversion, wall, cpu = timed(lambda: convaudit.convert(model, (data.x_test[:8],), rank=1, exclude=["conv1"]))
    report = conversion.report
    print(
        f"converted at m = 1, stem kept standard: MACs {report.macs_measured / report.macs_before:.3f}×, "
        f"params {report.params_measured / report.params_before:.3f}×"
    )
    rows: list[tuple[str, float, float, float]] = []
    rows.append(("training-free (convert, svd)", dx.accuracy(conversion.model, data.x_test, data.y_test), wall, cpu))

    calibration = [data.x_train[i * dx.BATCH : (i + 1) * dx.BATCH] for i in range(dx.CALIBRATION_BATCHES)]
    bn, wall, cpu = timed(lambda: dx.reestimate_batchnorm(conversion.model, calibration))
    rows.append(
        (f"BN re-estimation ({len(calibration)} batches)", dx.accuracy(bn, data.x_test, data.y_test), wall, cpu)
    )

    unlabeled = [data.x_train[i : i + dx.BATCH] for i in range(0, len(data.x_train), dx.BATCH)]  # images only
    budget = {"steps": args.steps, "seconds": args.seconds}
    result, wall, cpu = timed(lambda: convaudit.recover(conversion.model, model, unlabeled, seed=args.seed, **budget))
    recovered = dx.accuracy(result.model, data.x_test, data.y_test)
    rows.append(("label-free recovery (no labels)", recovered, wall, cpu))

    tuned = copy.deepcopy(conversion.model)
    _, wall, cpu = timed(lambda: dx.train(tuned, data, 100, lr=1e-3, seed=dx.SEED + 2))
    labelled = dx.accuracy(tuned, data.x_test, data.y_test)
    rows.append(("labelled fine-tuning (100 steps)", labelled, wall, cpu))

    print(f"\n{'way back (stem kept, m = 1)':<34} {'test acc.':>9} {'wall s':>8} {'CPU s':>7}")
    print("-" * 61)
    print(f"{'original (unconverted)':<34} {original:>9.4f} {'':>8} {'':>7}")
    for name, acc, wall, cpu in rows:
        print(f"{name:<34} {acc:>9.4f} {wall:>8.1f} {cpu:>7.1f}")

    held = result.before.samples
    print(
        f"\nrecovery: {len(unlabeled)} batches of unlabeled training images: {len(data.x_train) - held} images fitted, "
        f"{held} held out; held-out relative error {result.before.relative_error:.3f} → "
        f"{result.after.relative_error:.3f}, top-1 agreement {result.before.top1_agreement:.3f} → "
        f"{result.after.top1_agreement:.3f}"
    )
    for stage in result.stages:
        print(
            f"  {stage.name:<10} {stage.steps:>5} steps {stage.seconds:>6.1f} s  held-out error "
            f"{stage.error_before:.3f} → {stage.error_after:.3f}  ({stage.stopped})"
        )
    cpu_seconds = rows[2][3]
    ok = recovered >= TARGET_ACCURACY and cpu_seconds <= TARGET_CPU_SECONDS and recovered >= labelled - 0.005
    print(
        f"\ntarget: label-free ≥ {TARGET_ACCURACY} in ≤ {TARGET_CPU_SECONDS:.0f} s CPU, matching labelled "
        f"fine-tuning ({labelled:.4f}): {'met' if ok else 'NOT met'} ({recovered:.4f} in {cpu_seconds:.1f} s CPU)"
    )
    return 1 if args.strict and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
