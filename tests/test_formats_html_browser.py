"""resnet50 and efficientnet_b0 reports in headless Chromium at 1400 and 800 px: no script or console error,
no horizontal overflow of the page or the summary, readable chart text, a graph that opens, and screenshots.

The checks run in a copy of the page with a checker script injected before ``</body>`` (the product has no
test hook); the checker writes what it measured into ``<body data-check>``, read back from ``--dump-dom``.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest
import torch

import convaudit
from convaudit.formats.html import render_html
from tests.fixtures.chromium import CHROMIUM, run_chromium

WIDTHS = (1400, 800)
MODELS = ("resnet50", "efficientnet_b0")

#: Measures the page as laid out, then clicks the first collapsed module of the graph.
CHECKER = """<script>
(function () {
  var de = document.documentElement, summary = document.getElementById("summary"), out = {};
  out.page = [document.scrollingElement.scrollWidth, de.clientWidth];
  out.summary = [summary.scrollWidth, summary.clientWidth];
  var texts = document.querySelectorAll("svg.chart text");
  out.chartText = Math.min.apply(null, Array.prototype.map.call(texts, function (t) {
    var m = t.getScreenCTM();  /* font size times the scale on screen (labels are rotated) */
    return parseFloat(getComputedStyle(t).fontSize) * Math.hypot(m.a, m.b);
  }));
  var view = document.querySelector("#graph-view svg > g");
  out.scale = view ? parseFloat(/scale\\(([^)]+)\\)/.exec(view.getAttribute("transform"))[1]) : 0;
  out.boxes = document.querySelectorAll("#graph-view rect.box").length;
  var first = document.querySelector("#graph-view rect.box.mod");
  out.label = first ? first.parentNode.querySelector("text").textContent : "";
  if (first) first.dispatchEvent(new MouseEvent("click", { bubbles: true }));
  out.expanded = document.querySelectorAll("#graph-view rect.box").length;
  document.body.setAttribute("data-check", JSON.stringify(out));
})();
</script></body>"""


@pytest.fixture(scope="module", params=MODELS)
def page(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """The model's report, with the checker injected, written to a temporary file."""
    import torchvision

    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = getattr(torchvision.models, request.param)(weights=None)
    a = convaudit.analyze(model, input_shape=(1, 3, 224, 224), cross_check=False)
    path = tmp_path_factory.mktemp(request.param) / "report.html"
    path.write_text(render_html(a).replace("</body>", CHECKER, 1), encoding="utf-8")
    return request.param, path


@pytest.mark.zoo
@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
@pytest.mark.parametrize("width", WIDTHS)
def test_report_in_chromium(page: tuple[str, Path], width: int) -> None:
    name, path = page
    shot = path.parent / f"{name}-{width}.png"
    dom, log = run_chromium(
        path, path.parent / "profile", f"--window-size={width},1200", f"--screenshot={shot}", timeout=120
    )
    root = re.search(r"<html[^>]*>", dom)
    assert root is not None and 'data-report-ready="ok"' in root.group(0), "the page's script did not finish"
    assert "data-js-errors" not in root.group(0), root.group(0)
    assert not [line for line in log.splitlines() if ":CONSOLE" in line]
    found = re.search(r'data-check="([^"]*)"', dom)
    assert found is not None, "the checker did not run"
    check = json.loads(html.unescape(found.group(1)))
    page_w, viewport = check["page"]
    assert page_w <= viewport, f"the page scrolls sideways at {width} px ({page_w} > {viewport})"
    assert check["summary"][0] <= check["summary"][1], f"the summary overflows at {width} px: {check['summary']}"
    assert check["chartText"] >= 9, f"chart text {check['chartText']:.1f} px at {width} px"
    assert check["scale"] >= 0.75, "the graph's first view is too small to read"
    assert 10 <= check["boxes"] <= 80 and check["label"].startswith("▸ "), check  # blocks collapsed to modules
    assert check["expanded"] > check["boxes"], "clicking a module did not expand it"
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
