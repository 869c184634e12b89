"""Separability figures equal the energy the built separable layers keep."""

import pytest
import torch
import torch.nn as nn

import convaudit
from convaudit.analysis.separability import separability
from convaudit.conversion.layers import SeparableConv


@pytest.mark.parametrize("groups,cin,cout,k", [(1, 4, 6, 3), (2, 4, 6, 3), (1, 3, 2, 5), (3, 6, 9, 2)])
def test_energy_matches_the_layers(groups: int, cin: int, cout: int, k: int) -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(cin, cout, k, groups=groups)
    sep = separability(conv.weight, groups)
    for order, energies in (("dw_pw", sep.dw_pw), ("pw_dw", sep.pw_dw)):
        assert energies[-1] == pytest.approx(1.0)
        assert list(energies) == sorted(energies)
        for m, e in enumerate(energies, start=1):
            assert SeparableConv.from_conv(conv, rank=m, order=order).energy == pytest.approx(e, abs=1e-6)


def test_analysis_reports_separability_for_candidates_only() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 1))
    assert convaudit.analyze(model, input_shape=(1, 3, 8, 8)).layers[0].separability is None  # opt-in
    a = convaudit.analyze(model, input_shape=(1, 3, 8, 8), separability=True)
    assert len(a.layers[0].separability.dw_pw) == 8 and len(a.layers[0].separability.pw_dw) == 3
    assert a.layers[1].separability is None


def test_meta_weights_have_no_separability() -> None:
    with torch.device("meta"):
        model = nn.Sequential(nn.Conv2d(3, 8, 3))
    a = convaudit.analyze(model, input_shape=(1, 3, 8, 8), separability=True)
    assert a.layers[0].candidate and a.layers[0].separability is None
