"""Rank-1 depthwise-separable conversion of a small CNN trained on a real dataset: scikit-learn's digits.

The digits (1,797 8×8 grayscale images, 10 classes) ship inside scikit-learn: nothing is downloaded.
Install the extra first: ``pip install '.[examples]'``.

    python examples/digits_experiment.py            # the experiment (~80 s on 2 CPU cores)
    python examples/digits_experiment.py --quick    # fewer epochs/steps, for a smoke test

What it does, with fixed seeds (single-threaded by default: this model is too small to gain from more):

1. trains :class:`DigitsCNN` (conv 1→32, conv 32→64, conv 64→64, all 3×3 with BatchNorm+ReLU, pooling,
   a linear head; the digits are upsampled to 16×16) and reports its test accuracy;
2. converts it with ``convaudit.convert(rank=1, order="dw_pw")`` in two setups: A. every 3×3 conv;
   B. the stem kept standard (``exclude=["conv1"]``: with one input channel, conv1 at m = 1 is a single
   3×3 filter feeding 32 channels). Each with ``init="svd"`` (weight space), ``init="calibrated"`` (fit to
   the convs' real inputs from 4 training batches), calibrated with ``sequential=True`` (each layer
   fitted on the inputs it gets from the layers already converted) and ``init="random"`` (same
   structure, fresh weights). Prints the training-free test accuracy, the same after re-estimating the
   BatchNorm statistics on the calibration batches (``recalibrate_bn=True``, training-free), the output
   error and per-layer errors from the report, the largest depthwise kernel norm, and params/MACs before
   and after (measured on the converted model);
3. label-free recovery of every converted model (``convaudit.recover``: the training images without their
   labels, a quarter held out; ``--recover-steps``, default 250; ``benchmarks/bench_recover.py`` runs the
   default budget), then fine-tunes every converted model (with labels) for the same number of steps (the
   same batches, the same optimiser), printing test accuracy at three points, and the unconverted model as
   a reference;
4. prints one table per setup: stage × method → test accuracy (``--markdown``: also in Markdown).

Importing this file only defines the model: ``convaudit report examples/digits_experiment.py`` and
``convaudit convert examples/digits_experiment.py --init calibrated`` work on the (untrained) model from
``build_model()``, ``example_inputs()`` and ``calibration_inputs()``.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

SEED = 0
SIZE = 16  #: the 8×8 digits are upsampled (bilinear) to SIZE×SIZE
BATCH = 64
CALIBRATION_BATCHES = 4  #: training batches of BATCH images used by init="calibrated"


class DigitsCNN(nn.Module):
    """conv 1→32, conv 32→64, max-pool, conv 64→64 (all 3×3, BatchNorm+ReLU), global pool, linear."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.pool = nn.MaxPool2d(2)
        self.conv3 = nn.Conv2d(64, 64, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(64)
        self.head = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.pool(F.relu(self.bn2(self.conv2(x))))
        x = F.relu(self.bn3(self.conv3(x)))
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def build_model() -> nn.Module:
    """The (untrained) model, for ``convaudit report`` / ``convaudit convert``."""
    torch.manual_seed(SEED)
    return DigitsCNN()


def example_inputs() -> tuple[torch.Tensor]:
    """One 1×1×16×16 image (seeded noise: cheap, and needs no scikit-learn)."""
    return (torch.randn(1, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(SEED)),)


def calibration_inputs() -> list[torch.Tensor]:
    """A few batches of real training digits (model inputs; convaudit captures each conv's inputs itself)."""
    data = load_data()
    return [data.x_train[i * BATCH : (i + 1) * BATCH] for i in range(CALIBRATION_BATCHES)]


# --------------------------------------------------------------------------------------------- data


@dataclass
class Digits:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def load_data(test_fraction: float = 0.25) -> Digits:
    """sklearn's bundled digits, split with a fixed seed (stratified), upsampled to SIZE×SIZE, standardised."""
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise SystemExit("this example needs scikit-learn: pip install '.[examples]'") from exc
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (1797, 1, 8, 8) in [0, 1]
    y = torch.tensor(digits.target, dtype=torch.long)
    idx_train, idx_test = train_test_split(
        torch.arange(len(y)).numpy(), test_size=test_fraction, random_state=SEED, stratify=y.numpy()
    )
    idx_train, idx_test = torch.as_tensor(idx_train), torch.as_tensor(idx_test)
    x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    mean, std = x[idx_train].mean(), x[idx_train].std()
    x = (x - mean) / std
    return Digits(x[idx_train], y[idx_train], x[idx_test], y[idx_test])


# ------------------------------------------------------------------------------------ train / evaluate


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    was = model.training
    model.eval()
    try:
        return float((model(x).argmax(1) == y).float().mean())
    finally:
        model.train(was)


def train(
    model: nn.Module,
    data: Digits,
    steps: int,
    lr: float,
    seed: int,
    evaluate_at: tuple[int, ...] = (),
) -> dict[int, float]:
    """Adam with cosine decay for ``steps`` minibatch steps (seeded batch order); test accuracy at ``evaluate_at``."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    n = len(data.y_train)
    order = torch.randperm(n, generator=gen)
    pos, accs = 0, {}
    model.train()
    for step in range(1, steps + 1):
        if pos + BATCH > n:
            order, pos = torch.randperm(n, generator=gen), 0
        idx = order[pos : pos + BATCH]
        pos += BATCH
        loss = F.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step in evaluate_at:
            accs[step] = accuracy(model, data.x_test, data.y_test)
    model.eval()
    return accs


# ------------------------------------------------------------------------------------------ experiment


def reestimate_batchnorm(model: nn.Module, batches: list[torch.Tensor]) -> nn.Module:
    """A copy whose BatchNorm statistics are re-estimated on ``batches``: what ``recalibrate_bn=True``
    (``convaudit convert --recalibrate-bn``) does to the converted model, applied here after the fact so
    one conversion shows both numbers.
    """
    from convaudit.conversion.rewrite import recalibrate_batchnorm

    model = copy.deepcopy(model).eval()
    recalibrate_batchnorm(model, [((x,), {}) for x in batches])
    return model


def max_depthwise_norm(model: nn.Module) -> float:
    """Largest L2 norm of one depthwise kernel in the converted layers (SVD init: every kernel has norm 1)."""
    from convaudit.conversion.layers import SeparableConv

    norms = [
        float(m.conv_dw.weight.detach().flatten(1).norm(dim=1).max())
        for m in model.modules()
        if isinstance(m, SeparableConv)
    ]
    return max(norms) if norms else float("nan")


@dataclass
class MethodResult:
    name: str
    training_free: float  #: test accuracy right after conversion
    bn_reestimated: float  #: ... after re-estimating BatchNorm statistics on the calibration batches
    output_error: float | None  #: report.output_error: relative error of the logits on the test set
    layer_errors: dict[str, float | None] = field(default_factory=dict)  #: report: each layer alone on its real inputs
    max_dw_norm: float = 0.0
    finetuned: dict[int, float] = field(default_factory=dict)  #: steps → test accuracy
    seconds: float = 0.0  #: convaudit.convert wall time
    recovered: float | None = None  #: test accuracy after label-free recovery (convaudit.recover, no labels)
    recover_seconds: float = 0.0  #: its wall time


@dataclass
class Setup:
    title: str
    exclude: tuple[str, ...]
    methods: list[MethodResult]
    params_after: int
    macs_after: int  #: per image
    costs_match: bool


@dataclass
class Results:
    original_accuracy: float
    original_bn_reestimated: float
    original_finetuned: dict[int, float]
    setups: list[Setup]
    params_before: int
    macs_before: int  #: per image
    train_steps: int
    finetune_steps: int
    checkpoints: tuple[int, ...]
    n_train: int
    n_test: int
    seconds: float
    recover_steps: int = 0


SETUPS = (
    ("A. every 3×3 conv converted (conv1, conv2, conv3)", ()),
    (
        "B. stem kept standard (conv2, conv3 converted; conv1 has 1 input channel: at m=1 it is one 3×3 filter)",
        ("conv1",),
    ),
)


def main(argv: list[str] | None = None, *, verbose: bool = True) -> Results:
    """Run the experiment; prints as it goes (``verbose``) and returns the numbers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10, help="training epochs of the original model (default 10)")
    parser.add_argument(
        "--finetune-steps", type=int, default=100, help="fine-tuning steps for every method (default 100)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: fastest for this tiny model)")
    parser.add_argument(
        "--recover-steps", type=int, default=250, help="label-free recovery steps for every method (default 250)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="4 epochs, 40 fine-tuning and 30 recovery steps (a smoke test)"
    )
    parser.add_argument("--markdown", action="store_true", help="also print the tables in Markdown")
    opts = parser.parse_args(argv)
    if opts.quick:
        opts.epochs, opts.finetune_steps, opts.recover_steps = 4, 40, 30
    threads = torch.get_num_threads()
    torch.set_num_threads(opts.threads)
    try:
        return _run(opts, print if verbose else (lambda *a, **k: None))
    finally:
        torch.set_num_threads(threads)


def _run(opts: argparse.Namespace, say: Any) -> Results:
    import convaudit

    t_start = time.perf_counter()
    torch.manual_seed(SEED)
    data = load_data()
    steps_per_epoch = -(-len(data.y_train) // BATCH)
    train_steps = opts.epochs * steps_per_epoch
    ft = opts.finetune_steps
    checkpoints = tuple(sorted({max(1, ft // 10), max(1, ft // 4), ft}))
    say(
        f"digits (scikit-learn {_sklearn_version()}, bundled): {len(data.y_train)} train / {len(data.y_test)} test "
        f"images, 8×8 upsampled to {SIZE}×{SIZE}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s); seed {SEED}"
    )

    # 1. the original model
    model = build_model()
    t = time.perf_counter()
    train(model, data, train_steps, lr=3e-3, seed=SEED)
    original_acc = accuracy(model, data.x_test, data.y_test)
    say(
        f"\n[1] trained DigitsCNN: {opts.epochs} epochs ({train_steps} steps, batch {BATCH}, Adam 3e-3 cosine) "
        f"in {time.perf_counter() - t:.1f} s; test accuracy {original_acc:.4f}"
    )

    # 2. conversions at m = 1, training-free
    calibration = [data.x_train[i * BATCH : (i + 1) * BATCH] for i in range(CALIBRATION_BATCHES)]
    original_bn = accuracy(reestimate_batchnorm(model, calibration), data.x_test, data.y_test)
    example = (data.x_test,)  # verification (output and per-layer errors) runs on the whole test set
    n = len(data.y_test)
    methods_kw: list[tuple[str, dict[str, Any]]] = [
        ("svd", {"init": "svd"}),
        ("calibrated", {"init": "calibrated", "calibration": calibration}),
        ("calibrated+seq", {"init": "calibrated", "calibration": calibration, "sequential": True}),
        ("random", {"init": "random"}),
    ]
    say(
        f"\n[2] convaudit.convert(model, test images, rank=1, order='dw_pw', init=...); calibration = "
        f"{CALIBRATION_BATCHES} training batches of {BATCH} images. Errors (relative L2, from the report) are "
        f"measured on the {n} test images; 'BN re-est.' = test accuracy after recomputing BatchNorm statistics "
        f"on the calibration batches (convaudit's recalibrate_bn)."
    )
    setups: list[Setup] = []
    converted: dict[tuple[int, str], nn.Module] = {}
    report = None
    for si, (title, exclude) in enumerate(SETUPS):
        say(f"\n  {title}")
        methods: list[MethodResult] = []
        for name, kw in methods_kw:
            torch.manual_seed(SEED + 1)  # init="random" draws fresh weights: the same draw every run
            t = time.perf_counter()
            result = convaudit.convert(model, example, rank=1, exclude=exclude, **kw)
            seconds = time.perf_counter() - t
            report = result.report
            converted[si, name] = result.model
            res = MethodResult(
                name=name,
                training_free=accuracy(result.model, data.x_test, data.y_test),
                bn_reestimated=accuracy(reestimate_batchnorm(result.model, calibration), data.x_test, data.y_test),
                output_error=report.output_error,
                layer_errors={layer.name: layer.relative_error for layer in report.layers},
                max_dw_norm=max_depthwise_norm(result.model),
                seconds=seconds,
            )
            methods.append(res)
            errs = " ".join(f"{k} {_fmt(e)}" for k, e in res.layer_errors.items())
            say(
                f"    {name:<15} acc {res.training_free:.4f}  BN re-est. {res.bn_reestimated:.4f}  output error "
                f"{_fmt(res.output_error)}  per-layer error: {errs}  max |dw kernel| {res.max_dw_norm:.3g}  "
                f"({seconds:.2f} s)"
            )
        assert report is not None
        setups.append(
            Setup(title, exclude, methods, report.params_measured, report.macs_measured // n, report.costs_match)
        )
        say(
            f"    params {report.params_before:,} → {report.params_measured:,} "
            f"({report.params_measured / report.params_before:.3f}×)"
            f"; MACs per image {report.macs_before // n:,} → {report.macs_measured // n:,} "
            f"({report.macs_measured / report.macs_before:.3f}×); measured == predicted: {report.costs_match}"
        )
    assert report is not None

    # 3a. label-free recovery: the original as teacher, the training images without their labels as inputs
    unlabeled = [data.x_train[i : i + BATCH] for i in range(0, len(data.x_train), BATCH)]
    say(
        f"\n[3a] label-free recovery: convaudit.recover(converted, original, {len(unlabeled)} batches of training "
        f"images, no labels, a quarter held out; steps={opts.recover_steps})"
    )
    for si, setup in enumerate(setups):
        say(f"  {setup.title.split('(')[0].strip()}")
        for res in setup.methods:
            t = time.perf_counter()
            recovery = convaudit.recover(converted[si, res.name], model, unlabeled, steps=opts.recover_steps)
            res.recover_seconds = time.perf_counter() - t
            res.recovered = accuracy(recovery.model, data.x_test, data.y_test)
            say(
                f"    {res.name:<15} acc {res.recovered:.4f}  held-out error {recovery.before.relative_error:.3f} → "
                f"{recovery.after.relative_error:.3f}  ({res.recover_seconds:.1f} s)"
            )

    # 3. fine-tuning, the same budget for everyone (and for the original, as a reference)
    say(
        f"\n[3] fine-tuning: {ft} steps each (batch {BATCH}, Adam 1e-3 cosine, the same batch order); "
        f"test accuracy after {', '.join(map(str, checkpoints))} steps"
    )
    for si, setup in enumerate(setups):
        say(f"  {setup.title.split('(')[0].strip()}")
        for res in setup.methods:
            t = time.perf_counter()
            res.finetuned = train(converted[si, res.name], data, ft, lr=1e-3, seed=SEED + 2, evaluate_at=checkpoints)
            say(
                f"    {res.name:<15} "
                + "  ".join(f"{s:>4} steps {a:.4f}" for s, a in res.finetuned.items())
                + f"  ({time.perf_counter() - t:.1f} s)"
            )
    original_ft = train(copy.deepcopy(model), data, ft, lr=1e-3, seed=SEED + 2, evaluate_at=checkpoints)
    say("  original (unconverted)  " + "  ".join(f"{s:>4} steps {a:.4f}" for s, a in original_ft.items()))

    results = Results(
        original_accuracy=original_acc,
        original_bn_reestimated=original_bn,
        original_finetuned=original_ft,
        setups=setups,
        params_before=report.params_before,
        macs_before=report.macs_before // n,
        train_steps=train_steps,
        finetune_steps=ft,
        checkpoints=checkpoints,
        n_train=len(data.y_train),
        n_test=n,
        seconds=time.perf_counter() - t_start,
        recover_steps=opts.recover_steps,
    )
    say("\n[4] test accuracy, stage × method (chance = 0.10)")
    say(format_table(results))
    if opts.markdown:
        say("\n" + format_markdown(results))
    say(f"\nwhole experiment: {results.seconds:.1f} s")
    return results


def _sklearn_version() -> str:
    import sklearn

    return sklearn.__version__


def _fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


def _rows(r: Results, setup: Setup, acc: str) -> tuple[list[str], list[tuple[str, list[str]]]]:
    names = ["original"] + [m.name for m in setup.methods]
    ms = setup.methods
    rows = [
        ("output error (test logits)", ["0"] + [_fmt(m.output_error) for m in ms]),
        ("training-free", [format(r.original_accuracy, acc)] + [format(m.training_free, acc) for m in ms]),
        (
            "training-free, BN re-estimated",
            [format(r.original_bn_reestimated, acc)] + [format(m.bn_reestimated, acc) for m in ms],
        ),
    ]
    rows.append(
        (
            f"label-free recovery, {r.recover_steps} steps",
            ["—"] + ["—" if m.recovered is None else format(m.recovered, acc) for m in ms],
        )
    )
    for s in r.checkpoints:
        rows.append(
            (
                f"fine-tuned {s} steps",
                [format(r.original_finetuned[s], acc)] + [format(m.finetuned[s], acc) for m in ms],
            )
        )
    rows.append(("params", [f"{r.params_before:,}"] + [f"{setup.params_after:,}"] * len(ms)))
    rows.append(("MACs / image", [f"{r.macs_before:,}"] + [f"{setup.macs_after:,}"] * len(ms)))
    return names, rows


def _line(label: str, cells: list[str], w0: int, widths: list[int]) -> str:
    return f"{label:<{w0}}  " + "  ".join(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True))


def format_table(r: Results) -> str:
    """Plain-text tables, one per setup: rows = stages, columns = the original and each conversion."""
    out: list[str] = []
    for setup in r.setups:
        names, rows = _rows(r, setup, ".4f")
        w0 = max(len(label) for label, _ in [*rows, ("stage \\ method", [])])
        widths = [max(len(nm), *(len(cells[i]) for _, cells in rows)) for i, nm in enumerate(names)]

        out += ["", setup.title, _line("stage \\ method", names, w0, widths)]
        out.append("-" * (w0 + 2 + sum(widths) + 2 * (len(widths) - 1)))
        out += [_line(label, cells, w0, widths) for label, cells in rows]
    return "\n".join(out)


def format_markdown(r: Results) -> str:
    """The same tables in Markdown (for the README)."""
    out: list[str] = []
    for setup in r.setups:
        names, rows = _rows(r, setup, ".3f")
        out += [
            "",
            f"**{setup.title}**",
            "",
            "| stage | " + " | ".join(f"`{nm}`" if nm != "original" else nm for nm in names) + " |",
        ]
        out.append("|---|" + "---:|" * len(names))
        out += ["| " + label + " | " + " | ".join(cells) + " |" for label, cells in rows]
    return "\n".join(out).lstrip("\n")


if __name__ == "__main__":
    main(sys.argv[1:])
