"""Conversion report renderers: numbers from the report, names escaped, no network."""

import re

import torch

import convaudit
from convaudit.formats.conversion import render_conversion_html, render_conversion_text
from tests.fixtures.models import EvilNames


def converted():
    torch.manual_seed(0)
    return convaudit.convert(EvilNames(), (torch.randn(1, 3, 8, 8),), rank=1).report


def test_html_escapes_names_and_stays_offline() -> None:
    html = render_conversion_html(converted())
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "</script><!--" not in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert html.lstrip().lower().startswith("<!doctype html") and "measured = predicted" in html


def test_text_lists_every_layer_with_measured_figures() -> None:
    report = converted()
    text = render_conversion_text(report)
    assert f"{report.params_before:,} → {report.params_measured:,}" in text
    for layer in report.layers:
        assert f"{layer.macs_before:,} → {layer.macs_measured:,}" in text
    assert "measured = predicted" in text
