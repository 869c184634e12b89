"""Benchmark: output-aware layer choice (``--select sensitivity``) against energy-based choice, on the digits CNN.

Prints, in one run: the digits CNN of ``examples/digits_experiment.py`` (trained as that script trains it;
``--quick``: fewer epochs), converted training-free at the same ``--target-macs`` two ways:

- energy: the plan of ``convaudit.convert(model, x, target_macs=T)`` (layers and m for the least weight
  energy lost);
- sensitivity: :func:`convaudit.conversion.sensitivity.sensitivity_plan` on the 4 calibration batches of the
  example (each candidate converted alone at each m, its effect on the logits measured).

Both plans are then built the same way (``rewrite`` + ``SeparableConv.from_conv``, init svd; BatchNorm
re-estimated on the same 4 batches when asked), so only the choice differs, and costed by ``convaudit.analyze``
(MACs *measured* on the converted model).

For each: the layers and m chosen, measured MACs (share of the original's), and on the held-out test images
(never used to choose): the logits' relative error, top-1 agreement with the original, test accuracy; once as
converted and once with BatchNorm re-estimated on the calibration batches (``recalibrate_bn``: the sensitivity
measurements then re-estimate too). Two setups: every 3×3 conv a candidate, and the stem kept standard.

Usage (from the repository root; needs scikit-learn: ``pip install '.[examples]'``)::

    python benchmarks/bench_select.py                      # targets 0.3 and 0.2
    python benchmarks/bench_select.py --targets 0.5 0.3    # other budgets
    python benchmarks/bench_select.py --quick              # 4 training epochs
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

import convaudit  # noqa: E402
from convaudit.conversion.fidelity import measure_fidelity  # noqa: E402
from convaudit.conversion.layers import SeparableConv  # noqa: E402
from convaudit.conversion.planning import Plan  # noqa: E402
from convaudit.conversion.rewrite import recalibrate_batchnorm, rewrite  # noqa: E402
from convaudit.conversion.sensitivity import sensitivity_plan  # noqa: E402
from convaudit.options import ConversionOptions  # noqa: E402

SETUPS = (("every 3×3 conv", ()), ("stem kept standard", ("conv1",)))


def load_digits_module() -> ModuleType:
    """examples/digits_experiment.py, imported by path (examples/ is not a package)."""
    path = REPO / "examples" / "digits_experiment.py"
    spec = importlib.util.spec_from_file_location("digits_experiment", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def apply_plan(model: nn.Module, plan: Plan, calibration: list[torch.Tensor], bn: bool) -> nn.Module:
    """The plan rewritten on a copy (init svd, as convert's default), BatchNorm re-estimated with ``bn``."""

    def factory(choice: Any, conv: nn.Module, inputs: Any) -> SeparableConv:
        return SeparableConv.from_conv(conv, rank=choice.rank, order=choice.order)

    converted, _ = rewrite(model, plan.choices, factory)
    if bn:
        recalibrate_batchnorm(converted, [((x,), {}) for x in calibration])
    return converted


def row(dx: ModuleType, model: nn.Module, converted: nn.Module, plan: Plan, data: Any, example: Any) -> dict:
    """The figures of one conversion (held-out = the test images)."""
    fidelity = measure_fidelity(model, converted, [((data.x_test,), {})], inputs="test images")
    macs = convaudit.analyze(converted, example, graph=False).totals.macs
    before = convaudit.analyze(model, example, graph=False).totals.macs
    return {
        "plan": " ".join(f"{c.name}:{c.rank}" for c in plan.choices) or "—",
        "macs": macs / before,
        "error": fidelity.relative_error,
        "agree": fidelity.top1_agreement,
        "acc": dx.accuracy(converted, data.x_test, data.y_test),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--targets", type=float, nargs="+", default=[0.3, 0.2], help="--target-macs shares (0.3 0.2)")
    p.add_argument("--epochs", type=int, default=10, help="training epochs (the example's default: 10)")
    p.add_argument("--quick", action="store_true", help="4 training epochs")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as the example)")
    args = p.parse_args(argv)
    if importlib.util.find_spec("sklearn") is None:
        print("skipped: scikit-learn is not installed (pip install '.[examples]')")
        return 0
    torch.set_num_threads(args.threads)
    dx = load_digits_module()
    epochs = 4 if args.quick else args.epochs
    torch.manual_seed(dx.SEED)
    data = dx.load_data()
    model = dx.build_model()
    steps = epochs * -(-len(data.y_train) // dx.BATCH)
    t = time.perf_counter()
    dx.train(model, data, steps, lr=3e-3, seed=dx.SEED)
    model.eval()
    print(
        f"digits CNN: {epochs} epochs ({steps} steps) in {time.perf_counter() - t:.1f} s; test accuracy "
        f"{dx.accuracy(model, data.x_test, data.y_test):.4f}; {len(data.y_test)} held-out test images; "
        f"calibration {dx.CALIBRATION_BATCHES}×{dx.BATCH} training images; torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s)"
    )
    calibration = [data.x_train[i * dx.BATCH : (i + 1) * dx.BATCH] for i in range(dx.CALIBRATION_BATCHES)]
    example = (data.x_test[: dx.BATCH],)
    analysis = convaudit.analyze(model, example, separability=True, graph=False)
    head = f"{'setup':<19} {'T':>5} {'BN':>3}  {'choice':<11} {'plan (layer:m)':<26} {'MACs×':>6}"
    head += f" {'held-out err':>12} {'top-1 agree':>11} {'test acc':>8} {'s':>5}"
    print("\n" + head + "\n" + "-" * len(head))
    wins = ties = losses = 0
    for title, exclude in SETUPS:
        for bn in (False, True):
            for target in args.targets:
                extra: dict[str, Any] = {"recalibrate_bn": True, "calibration": calibration} if bn else {}
                t = time.perf_counter()
                energy = convaudit.convert(model, example, target_macs=target, exclude=exclude, **extra)
                built = apply_plan(model, energy.plan, calibration, bn)
                e_row = row(dx, model, built, energy.plan, data, example) | {"s": time.perf_counter() - t}
                t = time.perf_counter()
                options = ConversionOptions(
                    select="sensitivity", target_macs=target, exclude=exclude, recalibrate_bn=bn
                )
                plan = sensitivity_plan(model, analysis, options, calibration)
                converted = apply_plan(model, plan, calibration, bn)
                s_row = row(dx, model, converted, plan, data, example) | {"s": time.perf_counter() - t}
                for name, r in (("energy", e_row), ("sensitivity", s_row)):
                    print(
                        f"{title:<19} {target:>5.3g} {'yes' if bn else 'no':>3}  {name:<11} {r['plan']:<26} "
                        f"{r['macs']:>6.3f} {r['error']:>12.3f} {r['agree']:>11.3f} {r['acc']:>8.4f} {r['s']:>5.1f}"
                    )
                d = s_row["error"] - e_row["error"]
                wins, ties, losses = wins + (d < -1e-3), ties + (abs(d) <= 1e-3), losses + (d > 1e-3)
    print(
        f"\nheld-out output error, sensitivity vs energy at the same target: lower in {wins}, "
        f"equal (±0.001) in {ties}, higher in {losses} of {wins + ties + losses} settings"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
