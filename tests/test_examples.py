"""The examples run as documented (the digits experiment needs scikit-learn, in the test extras)."""

import importlib.util
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_digits_experiment_quick() -> None:
    pytest.importorskip("sklearn")
    spec = importlib.util.spec_from_file_location("digits_experiment", EXAMPLES / "digits_experiment.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["digits_experiment"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    results = module.main(["--quick"], verbose=False)
    assert results.original_accuracy > 0.9
    for setup in results.setups:
        assert setup.costs_match
        by = {m.name: m for m in setup.methods}
        assert set(by) == {"svd", "calibrated", "calibrated+seq", "random"}
        assert all(0.0 <= a <= 1.0 for m in setup.methods for a in m.finetuned.values())
    stem_kept = {m.name: m for m in results.setups[1].methods}
    last = results.checkpoints[-1]
    # what the experiment is about: layers built from the trained weights recover faster than fresh ones
    assert stem_kept["svd"].finetuned[last] > stem_kept["random"].finetuned[last]
    assert stem_kept["svd"].bn_reestimated > 0.5 > stem_kept["random"].bn_reestimated
    # label-free recovery (no labels) improves on BatchNorm re-estimation alone
    assert stem_kept["svd"].recovered is not None and stem_kept["svd"].recovered > stem_kept["svd"].bn_reestimated


def test_detector_example_quick() -> None:
    spec = importlib.util.spec_from_file_location("detector_example", EXAMPLES / "detector_example.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["detector_example"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    converted, recovered = module.main(["--quick"], verbose=False)
    # label-free recovery of a two-output model: both figures move the right way, and detections come back
    assert recovered.relative_error < 0.5 * converted.relative_error
    assert recovered.kept > max(0.8, converted.kept)
