"""Options of an analysis and of a conversion: frozen, validated once, picklable.

The Python API (``analyze(..., options=...)``, ``convert(..., options=...)``, or their keywords), the CLI
and batch workers in other processes build the same objects; a bad value is a UsageError from
``__post_init__``, with the flag's name, wherever it came from. Torch-free, and free of lambdas and
closures so that ``pickle`` sends them anywhere (rules must then be module-level functions).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from convaudit.errors import UsageError
from convaudit.vocab import Init, Mode, Order, Select, Style, TracePath

__all__ = ["REAL_RUN_MAX_BYTES", "AnalysisOptions", "ConversionOptions", "options_from"]

#: What a real forward (the real path, for data-dependent models) may need before it is refused: 4 GiB.
REAL_RUN_MAX_BYTES = 4 * 2**30

_Options = TypeVar("_Options", "AnalysisOptions", "ConversionOptions")


@dataclass(frozen=True)
class AnalysisOptions:
    """How :func:`convaudit.analyze` looks at a model (see its docstring for each field)."""

    cross_check: bool = False  #: also count with fvcore (runs a real forward)
    rules: Mapping[Any, Any] | None = field(default=None, hash=False)  #: MAC rule overrides; None = ignore
    shape_rules: Mapping[Any, Any] | None = field(default=None, hash=False)  #: shape rule overrides
    leaf_types: tuple[type, ...] = ()  #: module types the tracer must not trace into (the CLI's --leaf)
    train_mode: bool = False  #: analyse the training graph (model.train()); by default the model runs in eval mode
    graph: bool = True  #: build the graph view
    separability: bool = False  #: read candidate weights for the energy each separable form keeps
    timing: bool = False  #: time every candidate and its separable forms on this device (the CLI's --measure)
    timing_seconds: float = 3.0  #: time cap per candidate (and per model end to end) of the measurement, seconds
    #: of the measured and predicted layers: "contiguous", "channels_last" or "both" (decided on contiguous)
    memory_format: str = "contiguous"
    #: a convaudit.latency.profile.DeviceProfile for predicted times; None: the calibrated one, else the default
    latency_profile: Any = field(default=None, hash=False, compare=False)
    source: str | None = None  #: how the user named the model (shown in reports)
    trace_path: TracePath | None = None  #: use only this path (fx, hooks or real; no fallback); None: fx first
    real_run_max_bytes: int = REAL_RUN_MAX_BYTES  #: the real path refuses, or stops, a forward needing more
    depth: int = 3  #: how deep reports show the module tree (the CLI's --depth); deeper modules fold into their row

    def __post_init__(self) -> None:
        if not (isinstance(self.depth, int) and not isinstance(self.depth, bool) and self.depth >= 0):
            raise UsageError(f"--depth {self.depth!r}: give a whole number of levels, 0 or more (e.g. 3)")
        if self.trace_path is not None:
            _set(self, "trace_path", TracePath.of(self.trace_path, "trace_path"))
        if not (isinstance(self.real_run_max_bytes, int) and not isinstance(self.real_run_max_bytes, bool)):
            raise UsageError(f"real_run_max_bytes {self.real_run_max_bytes!r}: give a number of bytes, e.g. 2**32")
        if self.real_run_max_bytes <= 0:
            raise UsageError(f"real_run_max_bytes {self.real_run_max_bytes!r}: give a positive number of bytes")
        for name in ("rules", "shape_rules"):
            given = getattr(self, name)
            if given is None:
                continue
            for key, rule in given.items():
                if rule is not None and not callable(rule):
                    raise UsageError(
                        f"{name}[{key!r}] is a {type(rule).__name__}; give a function of the call, or None to ignore it"
                    )
            _set(self, name, dict(given))  # a copy: the caller's dict may change after, these options do not
        _set(self, "leaf_types", _leaf_types(self.leaf_types))
        if not (_is_number(self.timing_seconds) and 0 < self.timing_seconds < float("inf")):
            raise UsageError(f"--measure-time {self.timing_seconds!r}: give a positive number of seconds, e.g. 3")
        if self.memory_format not in ("contiguous", "channels_last", "both"):
            raise UsageError(f"--memory-format {self.memory_format!r}: choose contiguous, channels_last or both")


@dataclass(frozen=True)
class ConversionOptions:
    """What :func:`convaudit.convert` rewrites, and how (see its docstring for each field).

    Strings are read into the vocabularies (``order="pw_dw"`` becomes ``Order.PW_DW``); ``rank`` is an int,
    ``"full"`` (exact), or None: 1, unless ``energy``, ``target_macs`` or ``max_output_error`` choose m per layer.

    ``select="sensitivity"`` (calibration batches needed) measures what each candidate does to the final output
    when converted alone at each m, and chooses layers and m under ``target_macs`` for the least output error;
    with ``rank`` fixed (then ``rank`` and ``target_macs`` combine) it chooses only which layers, at that m.
    ``max_output_error`` picks the cheapest conversion whose held-out output error (after recovery, when asked)
    meets it, ranking candidate plans by ``select`` (sensitivity unless ``select="energy"``).
    """

    rank: int | str | None = None
    order: Order = Order.DW_PW
    init: Init = Init.SVD
    sequential: bool = False  #: calibrate each layer on the model converted so far
    recalibrate_bn: bool = False  #: re-estimate BatchNorm statistics on the calibration batches after
    style: Style | None = None  #: mobilenet: BN+ReLU between the parts (init random only)
    include: tuple[str, ...] = ()  #: qualified-name globs: convert only these
    exclude: tuple[str, ...] = ()  #: qualified-name globs: leave these alone
    min_savings: float = 0.0  #: skip layers saving less than this share of their MACs
    energy: float | None = None  #: per layer, the smallest m keeping this share of the weight energy
    target_macs: float | None = None  #: whole-model MAC budget as a share of today's
    exact: bool = False  #: fail when a layer's relative error exceeds EXACT_TOLERANCE
    recover: bool = False  #: label-free recovery after the rewrite (the original as teacher, calibration inputs)
    recover_steps: int | None = None  #: recovery's step budget (None: its default, or only the time budget)
    recover_seconds: float | None = None  #: recovery's wall-clock budget (the CLI's --recover-time)
    seed: int = 0  #: recovery's random stream (batch order, crops): the same seed repeats a run
    device: str = "cpu"  #: where recovery trains: "cpu" or "cuda" (or "cuda:N")
    inplace: bool = False  #: rewrite the model itself instead of a copy
    train_mode: bool = False  #: analyse and cost the training graph (verification always runs in eval mode)
    leaf_types: tuple[type, ...] = ()  #: module types the tracer must not trace into (the CLI's --leaf)
    source: str | None = None  #: how the user named the model (shown in reports)
    select: Select | None = None  #: how layers and m are chosen under a budget; None: by weight energy
    max_output_error: float | None = None  #: the cheapest conversion whose held-out output error meets this

    def __post_init__(self) -> None:
        _set(self, "leaf_types", _leaf_types(self.leaf_types))
        if self.select is not None:
            _set(self, "select", Select.of(self.select, "--select"))
        _check_budget(self)
        _set(self, "rank", _rank(self.rank))
        _set(self, "order", Order.of(self.order, "--order"))
        _set(self, "init", Init.of(self.init, "--init"))
        if self.style is not None:
            _set(self, "style", Style.of(self.style, "--style"))
            if self.init is not Init.RANDOM:
                raise UsageError("--style mobilenet is for training from scratch: it needs --init random")
            if self.order is not Order.DW_PW:
                raise UsageError(
                    "--style mobilenet puts BN+ReLU between depthwise and pointwise: it needs --order dw_pw"
                )
        if self.energy is not None and not (_is_number(self.energy) and 0 < self.energy <= 1):
            raise UsageError(f"--energy {self.energy}: give a share of the weight energy in (0, 1], e.g. 0.95")
        if self.target_macs is not None and not (_is_number(self.target_macs) and 0 < self.target_macs <= 1):
            raise UsageError(f"--target-macs {self.target_macs}: give a share of today's MACs in (0, 1], e.g. 0.5")
        if not (_is_number(self.min_savings) and 0 <= self.min_savings < 1):
            raise UsageError(f"--min-savings {self.min_savings!r}: give a share of a layer's MACs in [0, 1), e.g. 0.5")
        for name in ("include", "exclude"):
            _set(self, name, _globs(getattr(self, name)))
        _check_recovery(self)

    @property
    def by_energy(self) -> bool:
        """True when the plan chooses by the weight energies (they must be read from the weights).

        Also under ``select="sensitivity"``: its plan is checked against the energy-based one.
        """
        budgets = (self.energy, self.target_macs, self.max_output_error)
        return any(b is not None for b in budgets) or self.order is Order.AUTO or self.select is Select.RECOMMENDED

    def settings(self) -> dict[str, Any]:
        """The settings as a ConversionReport records them (rank as used: 1 unless m is chosen per layer)."""
        by_layer = self.energy is not None or self.target_macs is not None or self.max_output_error is not None
        by_layer = by_layer or self.select is Select.RECOMMENDED
        return {
            "rank": self.rank if self.rank is not None or by_layer else 1,
            "order": self.order,
            "init": self.init,
            "sequential": self.sequential,
            "recalibrate_bn": self.recalibrate_bn,
            "style": self.style,
            "include": list(self.include),
            "exclude": list(self.exclude),
            "min_savings": self.min_savings,
            "energy": self.energy,
            "target_macs": self.target_macs,
            "select": self.select,
            "max_output_error": self.max_output_error,
            "recover": self.recover,
            "recover_steps": self.recover_steps,
            "recover_seconds": self.recover_seconds,
            "seed": self.seed,
            "device": self.device,
            "mode": Mode.TRAIN if self.train_mode else Mode.EVAL,
            "leaf": [f"{t.__module__}.{t.__qualname__}" for t in self.leaf_types],  # as --leaf names them
        }


def _check_budget(o: ConversionOptions) -> None:
    """The ways of choosing m and layers that combine, and those that do not."""
    sensitivity = o.select is Select.SENSITIVITY
    if o.select is Select.RECOMMENDED:
        chosen = (("--rank", o.rank), ("--energy", o.energy), ("--target-macs", o.target_macs))
        given = [flag for flag, v in (*chosen, ("--max-output-error", o.max_output_error)) if v is not None]
        if given or o.order != Order.DW_PW:  # (order is read into Order after this check)
            flag = given[0] if given else "--order"
            raise UsageError(f"--select recommended chooses each layer's order and m itself: drop {flag}")
    if o.rank is not None and (o.energy is not None or (o.target_macs is not None and not sensitivity)):
        raise UsageError(
            "--rank cannot be combined with --energy or --target-macs: they choose m per layer "
            "(with --select sensitivity, --rank and --target-macs choose which layers to convert at that m)"
        )
    if o.energy is not None and o.target_macs is not None:
        raise UsageError("give --energy or --target-macs, not both")
    if o.max_output_error is not None:
        if not (_is_number(o.max_output_error) and 0 < o.max_output_error < float("inf")):
            raise UsageError(
                f"--max-output-error {o.max_output_error!r}: give a positive relative error of the output, e.g. 0.05"
            )
        if o.energy is not None or o.target_macs is not None:
            raise UsageError(
                "--max-output-error chooses the MAC budget itself: it cannot be combined with --energy or --target-macs"
            )
    if sensitivity and o.energy is not None:
        raise UsageError("--select sensitivity chooses m by the output error: it cannot be combined with --energy")
    if o.max_output_error is not None and o.rank is not None and o.select is Select.ENERGY:
        raise UsageError("--max-output-error with --rank fixed chooses layers by sensitivity: drop --select energy")
    if sensitivity and o.init == Init.RANDOM:  # (init is read into Init after this check)
        raise UsageError(
            "--select sensitivity measures the function each conversion keeps; --init random keeps none: "
            "use --init svd or calibrated"
        )


def options_from(cls: type[_Options], options: _Options | None, keywords: Mapping[str, Any], caller: str) -> _Options:
    """``options`` (or the defaults) with the keyword arguments of the older API applied, validated once.

    Raises:
        TypeError: a keyword that is no field of ``cls`` (as for any function), or ``options`` of another type.
    """
    if options is not None and not isinstance(options, cls):
        raise TypeError(f"{caller}(options=...) takes a {cls.__name__}, not a {type(options).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    for name in keywords:
        if name not in names:
            raise TypeError(f"{caller}() got an unexpected keyword argument {name!r}")
    if options is None:
        return cls(**keywords)
    return dataclasses.replace(options, **keywords) if keywords else options


def _set(options: object, name: str, value: object) -> None:
    """Normalise a field of a frozen dataclass in its own ``__post_init__``."""
    object.__setattr__(options, name, value)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _rank(rank: object) -> int | str | None:
    """An int ≥ 1, "full" or None; the CLI's text ("3") is read as the int."""
    if rank is None or rank == "full":
        return rank
    if isinstance(rank, str) and rank.isdigit() and rank.isascii():
        rank = int(rank)
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise UsageError(f"--rank {rank!r}: give a positive integer or 'full'")
    return rank


def _check_recovery(options: ConversionOptions) -> None:
    """The recovery fields: budgets positive, a seed an int, a device cpu or cuda; budgets only with recover."""
    steps, seconds = options.recover_steps, options.recover_seconds
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise UsageError(f"--recover-steps {steps!r}: give a positive number of steps, e.g. 300")
    if seconds is not None and not (_is_number(seconds) and 0 < seconds < float("inf")):
        raise UsageError(f"--recover-time {seconds!r}: give a positive number of seconds, e.g. 600")
    if isinstance(options.seed, bool) or not isinstance(options.seed, int) or options.seed < 0:
        raise UsageError(f"--seed {options.seed!r}: give a non-negative integer")
    device = options.device
    if not (isinstance(device, str) and (device in ("cpu", "cuda") or _is_cuda_index(device))):
        raise UsageError(f"--device {device!r}: choose cpu or cuda (or cuda:N)")
    if not options.recover:
        given = [
            flag for flag, value in (("--recover-steps", steps), ("--recover-time", seconds)) if value is not None
        ] + (["--device"] if device != "cpu" else [])
        if given:
            raise UsageError(f"{given[0]} sets how recovery runs: it needs --recover")


def _is_cuda_index(device: str) -> bool:
    prefix, _, index = device.partition(":")
    return prefix == "cuda" and index.isdigit() and index.isascii()


def _leaf_types(values: Sequence[type] | type) -> tuple[type, ...]:
    """A tuple of classes (one class given alone is one class); anything else is a UsageError."""
    types = (values,) if isinstance(values, type) else tuple(values)
    for t in types:
        if not isinstance(t, type):
            raise UsageError(
                f"leaf_types holds {t!r}, a {type(t).__name__}; give nn.Module classes (the CLI's --leaf MODULE.CLASS)"
            )
    return types


def _globs(values: Sequence[str] | str) -> tuple[str, ...]:
    """A tuple of globs; one glob given as a string is one glob, not its characters."""
    return (values,) if isinstance(values, str) else tuple(values)
