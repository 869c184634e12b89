"""One third-party zoo model, analysed and checked against its oracles, in a process of its own.

``python tests/zoo_worker.py SPEC_JSON`` builds one model, runs every check and prints one JSON line;
``tests/test_zoo_timm.py`` and ``tests/test_zoo_third_party.py`` run it through :class:`ZooRunner`, which
forks each model's process from a server that imported torch, timm, monai and smp once (importing them
takes 5-10 s, longer than most models' checks): one fresh process per model, so memory and torch state
do not accumulate, and up to ``CONVAUDIT_ZOO_JOBS`` (default 2) models at a time. With
``CONVAUDIT_ZOO_RESULTS=FILE`` every model's result is appended to FILE (JSON lines: paths, seconds per stage).

For one model (built untrained under a seed, as its builder returns it, i.e. in train mode):

* its buffers are moved away from their initial values (a train-mode forward), so an update shows;
* oracle: ``FlopCounterMode`` on an eval-mode real forward under no_grad, on the inputs the real path
  would use (``materialize``: seeded), each ``aten.convolution`` attributed to the innermost module
  running it (global module hooks): per module, its convolution MACs (FLOPs / 2), how often it ran
  convolutions, and the set of such modules, against ``convaudit.analyze()``'s conv layers;
* the full ``state_dict`` (values with ``torch.equal``, dtypes), parameter and buffer identities and every
  module's training flag are as found after ``analyze`` in eval mode and after ``analyze(train_mode=True)``
  of the model in train mode (with one BatchNorm in eval: mixed flags come back as they were);
* optionally ``convaudit.convert(model, x, rank="full")``: the converted model's output error.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: What the fork server imports once (the rest loads in each model's process).
PRELOAD = (
    "torch",
    "torch.fx",
    "torch.utils.flop_counter",
    "torch._subclasses.fake_tensor",
    "timm",
    "monai.networks.nets",
    "segmentation_models_pytorch",
    "convaudit.analysis.engine",
    "convaudit.conversion.convert",
    "convaudit.sources.zoo",
)

EXACT = 1e-4  #: full-rank conversion: relative output error (convaudit.conversion.EXACT_TOLERANCE)
TIMEOUT_SECONDS = 600  #: one model's process, all checks (a stuck model fails alone)


# ---------------------------------------------------------------- building


def build(source: str, kwargs: dict[str, Any]) -> Any:
    """``timm:NAME`` through convaudit's zoo source (seeded); ``monai:CLASS``/``smp:CLASS`` from their constructors."""
    import torch

    from convaudit.sources.zoo import load_zoo, seeded

    prefix, _, name = source.partition(":")
    if prefix == "timm":
        if kwargs:
            import timm

            with seeded():
                return timm.create_model(name, pretrained=False, **kwargs)
        return load_zoo(source).model
    module = {"monai": "monai.networks.nets", "smp": "segmentation_models_pytorch"}[prefix]
    cls = getattr(importlib.import_module(module), name)
    with seeded():
        model = cls(**kwargs)
    assert isinstance(model, torch.nn.Module)
    return model


# ---------------------------------------------------------------- the oracle


@dataclass
class ConvOwners:
    """Per module that runs ``aten.convolution`` itself (the innermost one when it runs): MACs and calls."""

    macs: Counter[str] = field(default_factory=Counter)  #: FlopCounterMode's FLOPs / 2
    convolutions: Counter[str] = field(default_factory=Counter)  #: aten.convolution calls
    calls: Counter[str] = field(default_factory=Counter)  #: module calls that ran one or more
    total_macs: int = 0  #: FlopCounterMode's convolution FLOPs / 2 over the whole forward


def oracle(model: Any, args: tuple) -> ConvOwners:
    """FlopCounterMode on a real forward (the model as it is, under no_grad), convs by their innermost module."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import FlopCounterMode

    aten = torch.ops.aten
    names: dict[int, str] = {}
    for name, m in model.named_modules():
        names.setdefault(id(m), name)
    found = ConvOwners()
    stack: list[list[Any]] = []  # [module, name or None, ran a convolution]
    counter = FlopCounterMode(display=False)

    def conv_flops() -> int:
        return int(counter.flop_counts["Global"].get(aten.convolution, 0))

    class Attribute(TorchDispatchMode):
        def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
            if func.overloadpacket is not aten.convolution:
                return func(*args, **(kwargs or {}))
            before = conv_flops()
            out = func(*args, **(kwargs or {}))  # through FlopCounterMode, the mode below this one
            frame = next((f for f in reversed(stack) if f[1] is not None), None)
            owner = frame[1] if frame is not None else ""
            if frame is not None:
                frame[2] = True
            found.macs[owner] += (conv_flops() - before) // 2
            found.convolutions[owner] += 1
            return out

    def enter(module: Any, inputs: Any) -> None:
        stack.append([module, names.get(id(module)), False])

    def leave(module: Any, inputs: Any, output: Any) -> None:
        while stack:
            frame = stack.pop()
            if frame[0] is module:
                if frame[2] and frame[1] is not None:
                    found.calls[frame[1]] += 1
                return

    hooks = [
        torch.nn.modules.module.register_module_forward_pre_hook(enter),
        torch.nn.modules.module.register_module_forward_hook(leave, always_call=True),
    ]
    try:
        with torch.no_grad(), counter, Attribute():
            model(*args)
    finally:
        for hook in hooks:
            hook.remove()
    found.total_macs = conv_flops() // 2
    return found


def _owner_of(layer_name: str, owners: set[str]) -> str | None:
    """The module a functional conv layer runs in: ``mod (functional conv #2)``, or its weight's module and up."""
    base = layer_name.split(" (functional conv #")[0]
    if base.startswith("functional conv #"):
        base = ""
    parts = base.split(".") if base else []
    for cut in range(len(parts), -1, -1):
        candidate = ".".join(parts[:cut])
        if candidate in owners:
            return candidate
    return None


def compare(layers: Sequence[Any], found: ConvOwners) -> dict[str, Any]:
    """Our conv layers against the oracle's conv-running modules: what differs, by module name."""
    modules = {layer.name: layer for layer in layers if layer.op == "module"}
    owners = set(found.macs)
    functional: dict[str, list[Any]] = defaultdict(list)
    unplaced: list[Any] = []
    for layer in layers:
        if layer.op != "module":
            owner = _owner_of(layer.name, owners - set(modules))
            (functional[owner] if owner is not None else unplaced).append(layer)
    ours_macs = {n: layer.macs for n, layer in modules.items()}
    ours_calls = {n: layer.calls for n, layer in modules.items()}
    ours_convs = dict(ours_calls)
    for owner, group in functional.items():
        ours_macs[owner] = ours_macs.get(owner, 0) + sum(layer.macs for layer in group)
        ours_convs[owner] = ours_convs.get(owner, 0) + sum(layer.calls for layer in group)
    leftover = owners - set(ours_macs)
    if unplaced:  # functional convs named by an fx node: together they stand for the owners no layer names
        pooled = "(functional convs named by their fx nodes)"
        ours_macs[pooled] = sum(layer.macs for layer in unplaced)
        ours_convs[pooled] = sum(layer.calls for layer in unplaced)
        found.macs[pooled] = sum(found.macs.pop(n) for n in leftover)
        found.convolutions[pooled] = sum(found.convolutions.pop(n) for n in leftover)
        leftover = set()
    theirs = set(found.macs)
    return {
        "only_ours": sorted(set(ours_macs) - theirs),
        "only_oracle": sorted(leftover | (theirs - set(ours_macs))),
        "macs": {n: [ours_macs[n], found.macs[n]] for n in ours_macs if n in theirs and ours_macs[n] != found.macs[n]},
        "calls": {
            n: [ours_calls[n], found.calls[n]] for n in ours_calls if n in theirs and ours_calls[n] != found.calls[n]
        },
        "convolutions": {
            n: [ours_convs[n], found.convolutions[n]]
            for n in ours_convs
            if n in functional and ours_convs[n] != found.convolutions[n]
        },
        "functional": sum(len(g) for g in functional.values()) + len(unplaced),
    }


# ---------------------------------------------------------------- as found


def snapshot(model: Any) -> dict[str, Any]:
    """The full state_dict (copies), the identity of every parameter and buffer, every module's training flag."""
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "ids": {k: id(v) for k, v in model.state_dict(keep_vars=True).items()},
        "training": {n: m.training for n, m in model.named_modules()},
    }


def harm(before: dict[str, Any], model: Any) -> list[str]:
    """What differs from ``before``: state_dict keys, values (bit for bit), dtypes, identities, training flags."""
    import torch

    after = snapshot(model)
    problems = []
    if after["state"].keys() != before["state"].keys():
        problems.append(f"state_dict keys changed: {sorted(after['state'].keys() ^ before['state'].keys())[:5]}")
    for key in before["state"].keys() & after["state"].keys():
        a, b = before["state"][key], after["state"][key]
        if a.dtype != b.dtype or a.shape != b.shape or not torch.equal(a, b):
            problems.append(f"state_dict[{key!r}] changed ({a.dtype}{list(a.shape)} -> {b.dtype}{list(b.shape)})")
    moved = sorted(k for k in before["ids"] if before["ids"][k] != after["ids"].get(k))
    if moved:
        problems.append(f"tensors replaced: {moved[:5]}")
    flipped = sorted(n for n, t in before["training"].items() if after["training"].get(n) != t)
    if flipped:
        problems.append(f"training flags changed: {flipped[:5]}")
    return problems[:12]


# ---------------------------------------------------------------- one model


@contextlib.contextmanager
def _stage(result: dict[str, Any], name: str) -> Iterator[None]:
    """Time a stage; an exception ends the run with the stage's name and the error's last lines."""
    start = time.perf_counter()
    result["stage"] = name
    try:
        yield
    finally:
        result["seconds"][name] = round(time.perf_counter() - start, 2)


def check(spec: dict[str, Any], result: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every check of one model (module docstring); the result as plain data, filled into ``result`` as it goes."""
    import torch

    import convaudit
    from convaudit.sources.inputs import materialize

    warnings.simplefilter("ignore")
    torch.set_num_threads(int(spec.get("threads", torch.get_num_threads())))
    shape = tuple(spec["shape"])
    train_shape = (max(2, shape[0]), *shape[1:])  # BatchNorm on pooled features needs a batch > 1 in train mode
    result = {} if result is None else result
    result.update(source=spec["source"], shape=list(shape), seconds={})
    with _stage(result, "build"):
        model = build(spec["source"], spec.get("kwargs", {}))
        model.train()
        with torch.no_grad():  # buffers away from their initial values (running statistics, counters)
            model(torch.randn(train_shape, generator=torch.Generator().manual_seed(1)))
        model.eval()
    x = materialize(torch.empty(shape, device="meta"))  # what the real path runs on: seeded
    with _stage(result, "oracle"):
        found = oracle(model, (x,))
    with _stage(result, "analyze eval"):
        before = snapshot(model)
        a = convaudit.analyze(model, input_shape=shape, cross_check=bool(spec.get("cross_check")))
        result["harm_eval"] = harm(before, model)
    result.update(path=str(a.trace_path), note=a.trace_note, mode=str(a.mode), layers=len(a.layers))
    result["conv_macs"], result["oracle_conv_macs"] = a.totals.conv_macs, found.total_macs
    result["module_conv_macs"] = sum(layer.macs for layer in a.layers if layer.op == "module")
    result["uncosted_ops"] = list(a.uncosted_ops)
    result["diff"] = compare(a.layers, found)
    result["kinds"] = dict(Counter(layer.type.rsplit(".", 1)[-1] for layer in a.layers))
    result["candidates"] = a.totals.candidates
    if a.cross_check is not None:
        result["cross_check"] = {"conv_macs": a.cross_check.conv_macs, "skipped": a.cross_check.skipped}
    with _stage(result, "analyze train"):
        model.train()
        norm = next((m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)), None)
        if norm is not None:
            norm.eval()  # mixed flags: each module's own must come back
        before = snapshot(model)
        t = convaudit.analyze(model, input_shape=train_shape, train_mode=True, graph=False)
        result["harm_train"] = harm(before, model)
        result["train"] = {"path": str(t.trace_path), "mode": str(t.mode), "layers": len(t.layers)}
    if spec.get("convert"):
        with _stage(result, "convert"):
            model.eval()
            before = snapshot(model)
            c = convaudit.convert(model, (x,), rank="full")
            modules = dict(model.named_modules())
            result["convert"] = {
                "output_error": c.report.output_error,
                "costs_match": c.report.costs_match,
                "converted": dict(Counter(type(modules[layer.name]).__name__ for layer in c.report.layers)),
                "worst_layer_error": max((layer.relative_error or 0.0 for layer in c.report.layers), default=None),
                "harm": harm(before, model),
            }
    result["stage"] = "done"
    return result


def run_to_file(spec: dict[str, Any], out: str) -> None:
    """A forked process's body: the checks, their result (or the error) as JSON in ``out``; output to a log."""
    log = os.open(out + ".log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    result: dict[str, Any] = {"source": spec["source"], "stage": "start", "seconds": {}}
    try:
        check(spec, result)
    except BaseException as exc:  # reported, not raised: the test shows which stage failed and why
        result["error"] = f"{type(exc).__name__}: {str(exc).strip()[:2000]}"
        result["traceback"] = traceback.format_exc()[-4000:]
    Path(out).write_text(json.dumps(result, default=str), encoding="utf-8")


# ---------------------------------------------------------------- the fork server and the pytest side


def serve() -> None:
    """Import the heavy modules once, then fork one process per request line (``{"id", "spec", "out"}``).

    Reports ``{"id", "pid"}`` when a process starts and ``{"id", "status"}`` (its wait status) when it ends;
    on end of input, the processes still running are killed.
    """
    for name in PRELOAD:
        importlib.import_module(name)
    children: dict[int, Any] = {}
    pending = b""
    stdin = sys.stdin.fileno()
    open_input = True

    def say(message: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    while open_input or children:
        if open_input:
            ready, _, _ = select.select([stdin], [], [], 0.05)
            if ready:
                chunk = os.read(stdin, 65536)
                open_input = bool(chunk)
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    request = json.loads(line)
                    pid = os.fork()
                    if pid == 0:  # the model's own process
                        code = 0
                        try:
                            run_to_file(request["spec"], request["out"])
                        except BaseException:
                            code = 3
                        os._exit(code)
                    children[pid] = request["id"]
                    say({"id": request["id"], "pid": pid})
            if not open_input:
                for pid in children:
                    os.kill(pid, signal.SIGKILL)  # the client is gone: its models' processes go too
        else:
            time.sleep(0.05)
        while children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            say({"id": children.pop(pid), "status": status})


class ZooRunner:
    """Each model's checks in a process forked from :func:`serve`, up to ``jobs`` at a time, in test order."""

    def __init__(self, specs: Sequence[dict[str, Any]], jobs: int | None = None) -> None:
        self.specs = {spec.get("id", spec["source"]): spec for spec in specs}
        self.jobs = max(1, jobs or int(os.environ.get("CONVAUDIT_ZOO_JOBS", "2")))
        self.dir = tempfile.TemporaryDirectory(prefix="convaudit-zoo-")
        root = str(Path(__file__).resolve().parents[1])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        self.log = open(os.path.join(self.dir.name, "server.log"), "wb")  # noqa: SIM115 - open while the server runs
        self.server = subprocess.Popen(
            [sys.executable, __file__, "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            cwd=root,
            env=env,
        )
        self.running: dict[str, tuple[str, float]] = {}  #: source -> (result file, start time)
        self.pids: dict[str, int] = {}
        self.status: dict[str, int] = {}
        self.done: dict[str, dict[str, Any]] = {}
        self.started = 0
        self.order: list[str] = []  #: the models to start next, in this order (see :meth:`result`)

    def _start(self, key: str) -> None:
        out = os.path.join(self.dir.name, f"{self.started}.json")
        self.started += 1
        spec = dict(self.specs[key])
        spec.setdefault("threads", max(1, (os.cpu_count() or 1) // self.jobs))
        assert self.server.stdin is not None
        self.server.stdin.write((json.dumps({"id": key, "spec": spec, "out": out}) + "\n").encode())
        self.server.stdin.flush()
        self.running[key] = (out, time.monotonic())

    def _read(self, timeout: float) -> bool:
        """One message of the server, if one comes within ``timeout`` seconds."""
        assert self.server.stdout is not None
        ready, _, _ = select.select([self.server.stdout], [], [], max(0.0, timeout))
        if not ready:
            return False
        line = self.server.stdout.readline()
        if not line:
            raise RuntimeError(f"the zoo server ended (exit code {self.server.wait()})")
        message = json.loads(line)
        if "pid" in message:
            self.pids[message["id"]] = message["pid"]
        else:
            self.status[message["id"]] = message["status"]
        return True

    def _collect(self, source: str) -> None:
        out, started = self.running[source]
        while source not in self.status:
            left = TIMEOUT_SECONDS - (time.monotonic() - started)
            if left <= 0 and source in self.pids:
                os.kill(self.pids[source], signal.SIGKILL)  # this model's own process, by its id
                left = 5.0
            self._read(left)
        del self.running[source]
        status = self.status.pop(source)
        if os.path.exists(out):
            result = json.loads(Path(out).read_text(encoding="utf-8"))
        elif os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
            result = {"source": source, "stage": "timeout", "error": f"killed (no result in {TIMEOUT_SECONDS} s?)"}
        else:
            result = {"source": source, "stage": "crash", "error": f"the process died (wait status {status})"}
        if "error" in result and os.path.exists(out + ".log"):
            result["log"] = Path(out + ".log").read_text(encoding="utf-8", errors="replace")[-3000:]
        keep = os.environ.get("CONVAUDIT_ZOO_RESULTS")  # a file to append every result to (JSON lines)
        if keep:
            with open(keep, "a", encoding="utf-8") as f:
                f.write(json.dumps(result, default=str) + "\n")
        self.done[source] = result

    def result(self, key: str) -> dict[str, Any]:
        """The result for ``key`` (kept: several tests read it); the next models of :attr:`order` start meanwhile."""
        if key not in self.done and key not in self.running:
            self._start(key)
        upcoming = [k for k in self.order if k not in self.done and k not in self.running and k in self.specs]
        while upcoming and len(self.running) < self.jobs:
            self._start(upcoming.pop(0))
        if key not in self.done:
            self._collect(key)
        return self.done[key]

    def close(self) -> None:
        """End the server (it kills what still runs), and remove the results."""
        if self.server.stdin is not None:
            self.server.stdin.close()
        try:
            self.server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.server.kill()  # the server this runner started
            self.server.wait()
        self.log.close()
        self.dir.cleanup()


#: The result key each kind of check needs (it is missing when the run stopped before).
CHECKS = {"oracle": "diff", "harm": "harm_train", "convert": "convert", "costed": "uncosted_ops"}


def failures(result: dict[str, Any], check: str, *, adapter: str = "", exact: float = EXACT) -> list[str]:
    """What is wrong with one model's result for one kind of check (:data:`CHECKS`), a line each.

    Args:
        adapter: for "convert", the conv class the conversion must have rewritten (exactly).
    """
    src = result.get("source")
    if CHECKS[check] not in result:
        tail = result.get("traceback", "").strip().splitlines()[-6:]
        log = result.get("log", "").strip().splitlines()[-6:]
        error = result.get("error", "no error, but no result either")
        return [f"{src}: {result.get('stage')} failed: {error}", *tail, *(["-- output:", *log] if log else [])]
    shape = "×".join(map(str, result["shape"]))
    at = f"{src} at {shape} ({result['path']} path)"
    problems = []
    if check == "oracle":
        diff = result["diff"]
        if diff["only_ours"] or diff["only_oracle"]:
            problems.append(
                f"{at}: conv modules differ; only convaudit: {diff['only_ours'][:8]}, "
                f"only FlopCounterMode: {diff['only_oracle'][:8]}"
            )
        for what, label in [("macs", "MACs"), ("calls", "calls"), ("convolutions", "functional convolutions")]:
            if diff[what]:
                shown = ", ".join(f"{n}: {o:,} vs {t:,}" for n, (o, t) in list(diff[what].items())[:8])
                more = f" and {len(diff[what]) - 8} more" if len(diff[what]) > 8 else ""
                problems.append(f"{at}: per-conv {label} (convaudit vs FlopCounterMode) differ at {shown}{more}")
        if result["conv_macs"] != result["oracle_conv_macs"]:
            problems.append(
                f"{at}: conv MACs {result['conv_macs']:,} vs FlopCounterMode/2 {result['oracle_conv_macs']:,}"
            )
        checked = result.get("cross_check")
        if checked is not None and checked["skipped"] is None and checked["conv_macs"] != result["module_conv_macs"]:
            problems.append(f"{at}: fvcore's conv MACs {checked['conv_macs']:,} vs ours {result['module_conv_macs']:,}")
        if not result["layers"]:
            problems.append(f"{at}: no conv layers found")
    elif check == "harm":
        if result["mode"] != "eval" or result["train"]["mode"] != "train":
            problems.append(f"{src}: report modes {result['mode']}, {result['train']['mode']} (eval, train expected)")
        for mode in ("eval", "train"):
            if result[f"harm_{mode}"]:
                problems.append(f"{src}: analyze in {mode} mode changed the model: {result[f'harm_{mode}']}")
    elif check == "convert":
        converted = result["convert"]
        error = converted["output_error"]
        if error is None or not error < exact:
            problems.append(f"{at}: full-rank conversion's output error is {error} (not < {exact})")
        if adapter not in converted["converted"]:
            problems.append(f"{at}: full-rank conversion converted no {adapter}, only {converted['converted']}")
        if not converted["costs_match"]:
            problems.append(f"{at}: the converted model's measured costs are not the predicted ones")
        if converted["harm"]:
            problems.append(f"{src}: convert changed the model: {converted['harm']}")
    elif check == "costed" and result["uncosted_ops"]:
        problems.append(f"{at}: ops without a cost rule: {sorted(set(result['uncosted_ops']))[:8]}")
    return problems


def shared_runner(session: Any, specs: Sequence[dict[str, Any]]) -> ZooRunner:
    """The session's one runner (created at first use, closed when pytest ends), knowing ``specs``.

    Models start in the order of the session's selected tests that take a ``zoo_case`` (ids from the spec).
    """
    runner = getattr(session, "_convaudit_zoo_runner", None)
    if runner is None:
        runner = ZooRunner([])
        session._convaudit_zoo_runner = runner
        session.config.add_cleanup(runner.close)
    runner.specs.update({spec.get("id", spec["source"]): spec for spec in specs})
    if not runner.order:
        seen: dict[str, None] = {}
        for item in session.items:
            case = getattr(getattr(item, "callspec", None), "params", {}).get("zoo_case")
            if case is not None:
                seen.setdefault(case, None)
        runner.order = list(seen)
    return runner


def main(argv: Sequence[str]) -> int:
    """``zoo_worker.py '{"source": "timm:resnet18", "shape": [2, 3, 72, 104]}'``: one JSON line."""
    spec = json.loads(argv[0])
    result: dict[str, Any] = {"source": spec["source"], "stage": "start"}
    try:
        check(spec, result)
    except Exception as exc:
        result.update(error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
    print(json.dumps(result, default=str))
    return 0 if not any(failures(result, check) for check in CHECKS if check != "convert" or spec.get("convert")) else 1


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    if sys.argv[1:] == ["--serve"]:
        serve()
    else:
        raise SystemExit(main(sys.argv[1:]))
