/* convaudit report: sortable tables, layer filter, graph view.
 * Vanilla JS, no network. Text from the model (layer names, op labels) only ever reaches the page
 * through textContent / setAttribute, never through innerHTML. */
(function () {
  "use strict";

  function $(id) { return document.getElementById(id); }
  function each(list, fn) { Array.prototype.forEach.call(list, fn); }

  /* Same convention as the Python side's common.si: 4089184256 → "4.09 G". */
  function si(n) {
    var units = [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"]];
    for (var i = 0; i < units.length; i++) {
      if (Math.abs(n) >= units[i][0]) return (n / units[i][0]).toFixed(2) + " " + units[i][1];
    }
    return String(Math.round(n));
  }
  function commas(n) { return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ","); }

  /* ---- sortable tables: click (or Enter on) a header; numbers sort numerically, blanks last ---- */
  var collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });

  function sortBy(table, th, col) {
    var numeric = th.getAttribute("data-type") === "num";
    var current = th.getAttribute("aria-sort");
    var dir = current ? (current === "ascending" ? "descending" : "ascending") : (numeric ? "descending" : "ascending");
    each(th.parentNode.cells, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir);
    var body = table.tBodies[0];
    var keyed = Array.prototype.map.call(body.rows, function (row, i) {
      var cell = row.cells[col];
      var raw = cell ? cell.getAttribute("data-v") : "";
      if (raw === null) raw = cell.textContent;
      return { row: row, i: i, v: numeric ? (raw === "" ? NaN : parseFloat(raw)) : raw };
    });
    keyed.sort(function (a, b) {
      var an = numeric && isNaN(a.v), bn = numeric && isNaN(b.v);
      if (an || bn) return an === bn ? a.i - b.i : (an ? 1 : -1);
      var c = numeric ? a.v - b.v : collator.compare(a.v, b.v);
      return (dir === "descending" ? -c : c) || a.i - b.i;
    });
    var frag = document.createDocumentFragment();
    keyed.forEach(function (k) { frag.appendChild(k.row); });
    body.appendChild(frag);
  }

  function makeSortable(table) {
    var head = table.tHead.rows[table.tHead.rows.length - 1];
    each(head.cells, function (th, col) {
      th.addEventListener("click", function () { sortBy(table, th, col); });
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(table, th, col); }
      });
    });
  }

  /* ---- layer filter ---- */
  function setupFilter() {
    var table = $("layer-table"), box = $("filter"), only = $("only-candidates"), shown = $("shown");
    if (!table || !box) return;
    var rows = Array.prototype.slice.call(table.tBodies[0].rows);
    function apply() {
      var q = box.value.trim().toLowerCase(), n = 0;
      rows.forEach(function (row) {
        var name = (row.cells[1].getAttribute("data-v") || "").toLowerCase();
        var ok = (!q || name.indexOf(q) >= 0) && (!only.checked || row.classList.contains("cand"));
        row.hidden = !ok;
        if (ok) n += 1;
      });
      shown.textContent = n === rows.length ? rows.length + " layers" : "showing " + n + " of " + rows.length;
    }
    box.addEventListener("input", apply);
    only.addEventListener("change", apply);
    apply();
  }

  function showLayer(index) {
    var row = $("layer-" + (index + 1));
    if (!row) return;
    if (row.hidden) { $("filter").value = ""; $("only-candidates").checked = false; $("filter").dispatchEvent(new Event("input")); }
    row.scrollIntoView({ block: "center" });
    row.classList.remove("flash");
    void row.offsetWidth;
    row.classList.add("flash");
    setTimeout(function () { row.classList.remove("flash"); }, 1600);
  }

  /* ---- graph view: depth → x, lane → y; convs coloured by MACs on a log scale ---- */
  var STOPS = [[253, 230, 138], [245, 158, 11], [220, 38, 38], [127, 29, 29]];
  function heat(t) {
    t = Math.max(0, Math.min(1, t)) * (STOPS.length - 1);
    var i = Math.min(Math.floor(t), STOPS.length - 2), f = t - i, a = STOPS[i], b = STOPS[i + 1];
    return "rgb(" + [0, 1, 2].map(function (k) { return Math.round(a[k] + (b[k] - a[k]) * f); }).join(",") + ")";
  }

  function setupGraph() {
    var box = $("graph-view"), dataEl = $("report-data");
    if (!box || !dataEl) return;
    var data = JSON.parse(dataEl.textContent);
    var nodes = data.nodes || [], edges = data.edges || [], layers = data.layers || [];
    var tip = $("graph-tip"), fit = $("graph-fit");
    if (!nodes.length) { box.textContent = "The graph is empty."; return; }

    var maxDepth = 0, maxLane = 0, lo = Infinity, hi = 0;
    nodes.forEach(function (n) {
      maxDepth = Math.max(maxDepth, n[5]); maxLane = Math.max(maxLane, n[6]);
      if (n[4] >= 0 && n[3] > 0) { lo = Math.min(lo, n[3]); hi = Math.max(hi, n[3]); }
    });
    var logLo = Math.log(lo), span = Math.log(hi) - logLo;
    function colour(macs) { return macs > 0 && isFinite(span) ? heat(span > 0 ? (Math.log(macs) - logLo) / span : 0.6) : "#e2e8f0"; }
    if (hi > 0) { $("scale-lo").textContent = si(lo); $("scale-hi").textContent = si(hi); } else { $("graph-scale").hidden = true; }

    /* The SVG namespace, from the HTML parser (a static string: no data goes through it). */
    var probe = document.createElement("div");
    probe.insertAdjacentHTML("afterbegin", "<svg></svg>");
    var NS = probe.firstChild.namespaceURI;
    function el(name, attrs, parent) {
      var e = document.createElementNS(NS, name);
      for (var k in attrs) e.setAttribute(k, attrs[k]);
      if (parent) parent.appendChild(e);
      return e;
    }

    var DY = 24, TOP = 44, LEFT = 24, natural = Math.max(9, Math.min(26, 24000 / (maxDepth + 1)));

    function draw(dx) {
      var width = LEFT * 2 + maxDepth * dx, height = TOP + maxLane * DY + 34;
      var root = el("svg", { width: width, height: height, viewBox: "0 0 " + width + " " + height, role: "img", "aria-label": "model graph" });
      function X(n) { return LEFT + n[5] * dx; }
      function Y(n) { return TOP + n[6] * DY; }
      var d = [];
      edges.forEach(function (e) {
        var a = nodes[e[0]], b = nodes[e[1]];
        if (!a || !b) return;
        var x1 = X(a), y1 = Y(a), x2 = X(b), y2 = Y(b), steps = b[5] - a[5];
        if (y1 === y2 && steps <= 1) {
          d.push("M" + x1 + " " + y1 + "L" + x2 + " " + y2);
        } else if (y1 === y2) {
          var h = Math.min(TOP - 6, 8 + 6 * Math.log2(steps)) / 0.75, q = (x2 - x1) / 4;
          d.push("M" + x1 + " " + y1 + "C" + (x1 + q) + " " + (y1 - h) + " " + (x2 - q) + " " + (y2 - h) + " " + x2 + " " + y2);
        } else {
          var xm = (x1 + x2) / 2;
          d.push("M" + x1 + " " + y1 + "C" + xm + " " + y1 + " " + xm + " " + y2 + " " + x2 + " " + y2);
        }
      });
      el("path", { "class": "edges", d: d.join("") }, root);
      var frag = document.createDocumentFragment();
      var size = Math.max(6, Math.min(10, dx * 2)), dot = Math.max(1.2, Math.min(2.6, dx * 0.3));
      nodes.forEach(function (n, i) {
        var x = X(n), y = Y(n), shape;
        if (n[4] >= 0) {
          var cand = layers[n[4]] && layers[n[4]][2];
          shape = el("rect", { x: x - size / 2, y: y - size / 2, width: size, height: size, rx: 2, fill: colour(n[3]),
                               "class": "conv" + (cand ? " cand" : ""), "fill-opacity": cand ? 1 : 0.8 }, frag);
          if (cand && size < 9) shape.style.strokeWidth = "0.7";
        } else if (n[2] === "placeholder" || n[2] === "output") {
          shape = el("circle", { cx: x, cy: y, r: 4, "class": "io" }, frag);
          var t = el("text", { x: x, y: y + 16, "text-anchor": n[2] === "output" ? "end" : "start" }, frag);
          t.textContent = n[1];
        } else {
          shape = el("circle", { cx: x, cy: y, r: n[3] > 0 ? dot * 1.4 : dot, "class": "op" }, frag);
        }
        shape.setAttribute("data-i", i);
      });
      root.appendChild(frag);
      return root;
    }

    /* Overview strip for graphs wider than the view: convs by cost, a frame for the visible part. */
    var mini = $("graph-mini"), frame = null, sx = 1, dxNow = natural;
    function drawMini() {
      if (!mini) return;
      var fitted = fit && fit.checked;
      mini.hidden = fitted || LEFT * 2 + maxDepth * dxNow <= box.clientWidth;
      mini.textContent = "";
      if (mini.hidden) return;
      var W = mini.clientWidth - 2, laneH = Math.max(2, Math.min(6, 40 / (maxLane + 1))), H = (maxLane + 1) * laneH + 8;
      sx = (W - 8) / (maxDepth + 1);
      var svg = el("svg", { width: W, height: H, viewBox: "0 0 " + W + " " + H });
      el("line", { "class": "base", x1: 4, x2: W - 4, y1: 4 + laneH / 2, y2: 4 + laneH / 2 }, svg);
      nodes.forEach(function (n) {
        if (n[4] < 0) return;
        el("rect", { x: 4 + n[5] * sx, y: 4 + n[6] * laneH, width: Math.max(1.5, sx), height: laneH, fill: colour(n[3]) }, svg);
      });
      frame = el("rect", { "class": "view", y: 1, height: H - 2, rx: 2 }, svg);
      mini.appendChild(svg);
      syncFrame();
    }
    function syncFrame() {
      if (!frame || mini.hidden) return;
      var d0 = (box.scrollLeft - LEFT) / dxNow, d1 = (box.scrollLeft + box.clientWidth - LEFT) / dxNow;
      d0 = Math.max(0, d0); d1 = Math.min(maxDepth + 1, d1);
      frame.setAttribute("x", 4 + d0 * sx);
      frame.setAttribute("width", Math.max(4, (d1 - d0) * sx));
    }
    function jump(e) {
      var r = mini.getBoundingClientRect(), depth = (e.clientX - r.left - 4) / sx;
      box.scrollLeft = LEFT + depth * dxNow - box.clientWidth / 2;
    }
    if (mini) {
      var dragging = false;
      mini.addEventListener("mousedown", function (e) { dragging = true; jump(e); e.preventDefault(); });
      window.addEventListener("mousemove", function (e) { if (dragging) jump(e); });
      window.addEventListener("mouseup", function () { dragging = false; });
      box.addEventListener("scroll", syncFrame);
    }

    /* Fit the whole graph to the width by default while levels stay at least 2.5 px apart. */
    function fitted() { return (box.clientWidth - 2 * LEFT - 4) / Math.max(1, maxDepth); }
    if (fit && fitted() >= 2.5 && LEFT * 2 + maxDepth * natural > box.clientWidth) fit.checked = true;
    var current = null;
    function render() {
      dxNow = natural;
      if (fit && fit.checked) dxNow = Math.max(1.2, fitted());
      var next = draw(dxNow);
      if (current) box.replaceChild(next, current); else { box.textContent = ""; box.appendChild(next); }
      current = next;
      drawMini();
    }
    render();
    if (fit) fit.addEventListener("change", render);

    function line(parent, text, cls) {
      var div = document.createElement("div");
      if (cls) div.className = cls;
      div.textContent = text;
      parent.appendChild(div);
    }
    box.addEventListener("mouseover", function (e) {
      var i = e.target.getAttribute && e.target.getAttribute("data-i");
      if (i === null || i === undefined || !tip) return;
      var n = nodes[+i];
      tip.textContent = "";
      var title = document.createElement("b");
      title.textContent = n[1];
      tip.appendChild(title);
      line(tip, n[2] + (n[0] !== n[1] ? " · node " + n[0] : ""), "row");
      if (n[3] > 0) line(tip, commas(n[3]) + " MACs (" + si(n[3]) + ")");
      if (n[4] >= 0 && layers[n[4]]) {
        var L = layers[n[4]];
        line(tip, L[1] + " conv · " + (L[2] ? "candidate: " + si(L[4]) + " MACs predicted after DW→PW (m = 1)" : "not a candidate"));
        line(tip, "click: show row #" + (n[4] + 1) + " in the table", "row");
      }
      tip.hidden = false;
      move(e);
    });
    function move(e) {
      if (!tip || tip.hidden) return;
      var x = e.clientX + 14, y = e.clientY + 14;
      if (x + tip.offsetWidth > window.innerWidth - 8) x = e.clientX - tip.offsetWidth - 10;
      if (y + tip.offsetHeight > window.innerHeight - 8) y = e.clientY - tip.offsetHeight - 10;
      tip.style.left = x + "px"; tip.style.top = y + "px";
    }
    box.addEventListener("mousemove", move);
    box.addEventListener("mouseout", function (e) {
      if (e.target.getAttribute && e.target.getAttribute("data-i") !== null && tip) tip.hidden = true;
    });
    box.addEventListener("click", function (e) {
      var i = e.target.getAttribute && e.target.getAttribute("data-i");
      if (i !== null && i !== undefined && nodes[+i][4] >= 0) showLayer(nodes[+i][4]);
    });
  }

  /* Each part runs on its own: one failing part is reported (see <head>) and the others still work. */
  [function () { each(document.querySelectorAll("table.sortable"), makeSortable); }, setupFilter, setupGraph].forEach(function (part) {
    try { part(); } catch (err) { console.error("convaudit report: " + (err && err.stack || err)); }
  });
  document.documentElement.setAttribute("data-report-ready", "ok");
})();
