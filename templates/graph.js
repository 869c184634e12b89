/* convaudit report: the graph view. Modules are boxes (click to expand into their children, click the
 * frame's header to collapse), ops are boxes coloured by their share of the model's MACs; wheel or pinch
 * zooms, dragging pans, the buttons zoom, fit and reset. Ranks and orders come from the report
 * (formats/html_graph.py); this script only sizes and nests the boxes. Text from the model reaches the
 * page through textContent / setAttribute only, never through innerHTML. */
function convauditGraph(showLayer) {
  "use strict";
  var box = document.getElementById("graph-view"), dataEl = document.getElementById("report-data");
  if (!box || !dataEl) return;
  var D = JSON.parse(dataEl.textContent).graph;
  if (!D || !D.items.length) return;
  var items = D.items, layers = JSON.parse(dataEl.textContent).layers || [], N = items.length;
  var NAME = 0, LABEL = 1, KIND = 2, TYPE = 3, MACS = 4, PARENT = 5, RANK = 6, ORDER = 7, LAYER = 8, COUNT = 9;
  var BW = 208, BH = 38, IOW = 110, IOH = 26, GX = 14, GY = 18, PAD = 10, HEAD = 26;
  var tip = document.getElementById("graph-tip");

  var kids = [];
  for (var i = 0; i < N; i++) kids.push([]);
  for (i = 1; i < N; i++) kids[items[i][PARENT]].push(i);
  kids.forEach(function (k) { k.sort(function (a, b) { return items[a][RANK] - items[b][RANK] || items[a][ORDER] - items[b][ORDER]; }); });
  var open, initial = {};
  D.open.forEach(function (i) { initial[i] = true; });
  function reset() { open = {}; for (var k in initial) open[k] = true; open[0] = true; }
  reset();

  /* 3 significant figures in the boxes (231 M, 2.05 M); the tooltip has the exact count. */
  function si(n) {
    var u = [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"]];
    for (var j = 0; j < u.length; j++) if (Math.abs(n) >= u[j][0]) return Number((n / u[j][0]).toPrecision(3)) + " " + u[j][1];
    return String(Math.round(n));
  }
  function pct(n) { var s = n / D.total; return s >= 0.1 ? (100 * s).toFixed(0) + "%" : s >= 0.001 ? (100 * s).toFixed(1) + "%" : "<0.1%"; }
  function bin(macs) {
    if (macs <= 0) return 0;
    var s = macs / D.total, b = 1;
    while (b <= D.bins.length && s >= D.bins[b - 1]) b++;
    return b;
  }
  function short(type) { return String(type).split(".").pop(); }
  /* A dotted name cut from the left, at a dot when one is near: "features.1.0.block.0" → "…block.0". */
  function cut(text, room) {
    text = String(text);
    if (text.length <= room) return text;
    var tail = text.slice(text.length - Math.max(1, room - 1)), dot = tail.indexOf(".");
    return "…" + (dot >= 0 && tail.length - dot > 4 ? tail.slice(dot + 1) : tail);
  }
  function cutEnd(text, room) { text = String(text); return text.length <= room ? text : text.slice(0, room - 1) + "…"; }
  function figures(it) { return it[MACS] > 0 ? si(it[MACS]) + " · " + pct(it[MACS]) : ""; }
  /* "name · type · figures" in ``room`` characters: the figures always whole; the type cut, or left out
   * (it is in the tooltip) when less than 10 characters of it would show. */
  function fitted(name, type, figs, room) {
    var fixed = (name ? name.length + 3 : 0) + (figs ? figs.length + 3 : 0);
    var parts = [];
    if (name) parts.push(name);
    if (room - fixed >= Math.min(10, type.length)) parts.push(cutEnd(type, room - fixed));
    if (figs) parts.push(figs);
    return parts.join(" · ");
  }
  /* The text ``make(room)`` for the largest room (in characters, from ``room`` down) that fits ``width``
   * px once drawn; measured only while few boxes are shown (each measure is a layout). */
  var measured = 0;
  function fitText(t, width, make, room) {
    t.textContent = make(room);
    while (measured++ < 1500 && room > 6 && t.getComputedTextLength() > width) t.textContent = make(--room);
  }
  function isBox(i) { return i > 0 && !(items[i][KIND] === "c" && open[i]); }

  /* ---- layout: sizes bottom-up, offsets within the parent, then absolute positions ---- */
  var W = [], H = [], X = [], Y = [];
  function measure(i) {
    if (isBox(i)) { var io = items[i][KIND] === "i"; W[i] = io ? IOW : BW; H[i] = io ? IOH : BH; return; }
    var rows = [], rank = -1;
    kids[i].forEach(function (c) {
      measure(c);
      if (items[c][RANK] !== rank) { rows.push([]); rank = items[c][RANK]; }
      rows[rows.length - 1].push(c);
    });
    var head = i === 0 ? 0 : HEAD, pad = i === 0 ? 0 : PAD, w = 0, y = head;
    var widths = rows.map(function (row) {
      var rw = 0;
      row.forEach(function (c, k) { rw += W[c] + (k ? GX : 0); });
      w = Math.max(w, rw);
      return rw;
    });
    w = Math.max(w + 2 * pad, i === 0 ? 0 : BW);
    rows.forEach(function (row, r) {
      var x = (w - widths[r]) / 2, rh = 0;
      row.forEach(function (c) { X[c] = x; Y[c] = y; x += W[c] + GX; rh = Math.max(rh, H[c]); });
      row.forEach(function (c) { Y[c] += (rh - H[c]) / 2; });
      y += rh + GY;
    });
    W[i] = w; H[i] = y - GY + pad;
  }
  function place(i, x, y) {
    X[i] = x; Y[i] = y;
    if (!isBox(i)) kids[i].forEach(function (c) { place(c, x + X[c], y + Y[c]); });
  }

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
  function text(parent, x, y, value, cls) { var t = el("text", { x: x, y: y, "class": cls }, parent); t.textContent = value; return t; }

  var svg = el("svg", { "class": "graph", role: "img", "aria-label": "model graph" });
  var defs = el("defs", {}, svg), marker = el("marker", { id: "arrow", viewBox: "0 0 8 8", refX: 7, refY: 4, markerWidth: 7, markerHeight: 7, orient: "auto" }, defs);
  el("path", { d: "M0 0L8 4L0 8z", "class": "arrow" }, marker);
  var view = el("g", {}, svg);
  box.textContent = "";
  box.appendChild(svg);
  var s = 1, tx = 0, ty = 0;
  function apply() { view.setAttribute("transform", "translate(" + tx + " " + ty + ") scale(" + s + ")"); }

  function draw() {
    measure(0);
    place(0, 0, 0);
    view.textContent = "";
    var frames = el("g", {}, view), lines = el("g", { "class": "edges" }, view), heads = el("g", {}, view), boxes = el("g", {}, view);
    var vis = [0], shown = [];
    for (var i = 1; i < N; i++) {
      var p = items[i][PARENT];
      vis.push(vis[p] !== p || isBox(p) ? vis[p] : i);
      if (vis[i] === i && isBox(i)) shown.push(i);
    }
    measured = shown.length > 400 ? Infinity : 0;  /* many boxes: the character estimates alone */
    for (i = 1; i < N; i++) {
      if (vis[i] !== i) continue;
      var it = items[i], g = el("g", { "data-i": i }, isBox(i) ? boxes : frames);
      if (!isBox(i)) {
        el("rect", { x: X[i], y: Y[i], width: W[i], height: H[i], rx: 8, "class": "frame s" + bin(it[MACS]) }, g);
        g = el("g", { "data-i": i }, heads);  /* the header above the edges, so no line crosses its text */
        el("rect", { x: X[i], y: Y[i], width: W[i], height: HEAD - 4, rx: 8, "class": "head" }, g);
        fitText(text(g, X[i] + 8, Y[i] + 15, "", "ht"), W[i] - 16, function (room) { return "▾ " + fitted(cut(it[LABEL], room - 14), short(it[TYPE]), figures(it), room); }, Math.floor((W[i] - 20) / 6.4));
        continue;
      }
      var kind = it[KIND], layer = it[LAYER] >= 0 ? layers[it[LAYER]] : null;
      var cls = "box s" + bin(it[MACS]) + (kind === "c" ? " mod" : kind === "m" ? " mod deep" : kind === "i" ? " io" : "") + (layer && layer[2] ? " cand" : "");
      if (kind === "c") el("rect", { x: X[i] + 4, y: Y[i] + 4, width: W[i], height: H[i], rx: 6, "class": "stack" }, g);
      el("rect", { x: X[i], y: Y[i], width: W[i], height: H[i], rx: kind === "i" ? H[i] / 2 : 6, "class": cls }, g);
      if (kind === "i") { text(g, X[i] + W[i] / 2, Y[i] + 17, cut(it[LABEL], 14), "t1 mid"); continue; }
      fitText(text(g, X[i] + 8, Y[i] + 15, "", "t1"), W[i] - 14, function (room) { return (kind === "c" ? "▸ " : "") + cut(it[LABEL], room); }, 28);
      fitText(text(g, X[i] + 8, Y[i] + 30, "", "t2"), W[i] - 14, function (room) { return fitted("", short(it[TYPE]), figures(it), room); }, 33);
    }
    var seen = {}, d = [];
    function blocked(a, b, x1, y1, x2, y2) {  /* would the straight edge run through a box between its ends? */
      if (shown.length > 800) return y2 - y1 > BH + 2 * GY + HEAD + 1 && Math.abs(x2 - x1) < BW;
      var lo = Math.min(x1, x2), hi = Math.max(x1, x2);
      return shown.some(function (c) { return c !== a && c !== b && Y[c] > y1 && Y[c] + H[c] < y2 && X[c] < hi && X[c] + W[c] > lo; });
    }
    D.edges.forEach(function (e) {
      var a = vis[e[0]], b = vis[e[1]], key = a + " " + b;
      if (a === b || seen[key]) return;
      seen[key] = true;
      var x1 = X[a] + W[a] / 2, y1 = Y[a] + H[a], x2 = X[b] + W[b] / 2, y2 = Y[b];
      if (blocked(a, b, x1, y1, x2, y2)) {  /* a skip: around the boxes between, on the right */
        var bulge = Math.max(x1, x2) + BW / 2 + 16, k = (bulge - (x1 + x2) / 2) * 4 / 3;
        d.push("M" + x1 + " " + y1 + "C" + (x1 + k) + " " + (y1 + 30) + " " + (x2 + k) + " " + (y2 - 30) + " " + x2 + " " + (y2 - 1));
      } else {
        var m = Math.max(12, Math.abs(y2 - y1) / 2);
        d.push("M" + x1 + " " + y1 + "C" + x1 + " " + (y1 + m) + " " + x2 + " " + (y2 - m) + " " + x2 + " " + (y2 - 1));
      }
    });
    el("path", { d: d.join(""), "marker-end": "url(#arrow)", "class": "edge" }, lines);
    apply();
  }

  /* ---- zoom and pan ---- */
  function clampScale(v) { return Math.max(0.05, Math.min(3, v)); }
  function zoomAt(cx, cy, f) {
    var ns = clampScale(s * f);
    tx = cx - (cx - tx) * ns / s; ty = cy - (cy - ty) * ns / s; s = ns; apply();
  }
  function fit(widthOnly) {
    var vw = box.clientWidth - 16, vh = box.clientHeight - 16;
    s = clampScale(Math.min(1, vw / W[0], widthOnly ? 1 : vh / H[0]));
    tx = (box.clientWidth - W[0] * s) / 2; ty = 8; apply();
  }
  box.addEventListener("wheel", function (e) {
    e.preventDefault();
    var r = box.getBoundingClientRect();
    zoomAt(e.clientX - r.left, e.clientY - r.top, Math.exp(-e.deltaY * (e.ctrlKey ? 0.01 : 0.0015)));
  }, { passive: false });
  var pointers = {}, dragged = false, last = null;
  function spread() {
    var p = Object.keys(pointers).map(function (k) { return pointers[k]; });
    if (p.length < 2) return null;
    return { d: Math.hypot(p[0].x - p[1].x, p[0].y - p[1].y), x: (p[0].x + p[1].x) / 2, y: (p[0].y + p[1].y) / 2 };
  }
  box.addEventListener("pointerdown", function (e) {
    pointers[e.pointerId] = { x: e.clientX, y: e.clientY };
    dragged = false; last = spread();
  });
  box.addEventListener("pointermove", function (e) {
    var p = pointers[e.pointerId];
    if (!p) return;
    var dx = e.clientX - p.x, dy = e.clientY - p.y;
    if (!dragged && Math.abs(dx) + Math.abs(dy) < 4) return;
    if (!dragged && box.setPointerCapture) box.setPointerCapture(e.pointerId);
    dragged = true;
    p.x = e.clientX; p.y = e.clientY;
    var now = spread(), r = box.getBoundingClientRect();
    if (now && last) { zoomAt(now.x - r.left, now.y - r.top, now.d / last.d); last = now; return; }
    tx += dx; ty += dy; apply();
  });
  function up(e) { delete pointers[e.pointerId]; last = spread(); }
  box.addEventListener("pointerup", up);
  box.addEventListener("pointercancel", up);

  /* ---- clicks: expand a module, collapse a frame, show a conv's row ---- */
  function target(e) {
    var n = e.target;
    while (n && n !== box && !(n.getAttribute && n.getAttribute("data-i") !== null)) n = n.parentNode;
    return n && n !== box ? +n.getAttribute("data-i") : -1;
  }
  box.addEventListener("click", function (e) {
    if (dragged) { dragged = false; return; }
    var i = target(e);
    if (i < 0) return;
    var it = items[i], cls = e.target.getAttribute("class") || "";
    if (it[KIND] === "c" && (!open[i] || cls === "head" || cls === "ht")) {
      var sx = tx + X[i] * s, sy = ty + Y[i] * s;
      open[i] = !open[i];
      if (!open[i]) kids[i].forEach(function close(c) { delete open[c]; kids[c].forEach(close); });
      for (var only = i; open[i] && kids[only].length === 1 && items[kids[only][0]][KIND] === "c"; only = kids[only][0]) open[kids[only][0]] = true;  /* a wrapper opens with its block */
      draw();
      tx = sx - X[i] * s; ty = sy - Y[i] * s; apply();  /* the clicked module stays where it was */
      if (tip) tip.hidden = true;
    } else if (it[LAYER] >= 0 && showLayer) {
      showLayer(it[LAYER]);
    }
  });
  function buttons(id, fn) { var b = document.getElementById(id); if (b) b.addEventListener("click", fn); }
  buttons("graph-in", function () { zoomAt(box.clientWidth / 2, box.clientHeight / 2, 1.25); });
  buttons("graph-out", function () { zoomAt(box.clientWidth / 2, box.clientHeight / 2, 0.8); });
  buttons("graph-fitall", function () { fit(false); });
  buttons("graph-reset", function () { reset(); draw(); fit(true); });
  buttons("graph-expand", function () { for (var k = 0; k < N; k++) if (items[k][KIND] === "c") open[k] = true; draw(); fit(true); });

  /* ---- tooltip ---- */
  function line(parent, value, cls) {
    var div = document.createElement("div");
    if (cls) div.className = cls;
    div.textContent = value;
    parent.appendChild(div);
  }
  box.addEventListener("mouseover", function (e) {
    var i = target(e);
    if (i < 0 || !tip) return;
    var it = items[i], layer = it[LAYER] >= 0 ? layers[it[LAYER]] : null;
    tip.textContent = "";
    var title = document.createElement("b");
    title.textContent = it[NAME];
    tip.appendChild(title);
    line(tip, it[TYPE], "row");
    if (it[MACS] > 0) line(tip, String(it[MACS]).replace(/\B(?=(\d{3})+(?!\d))/g, ",") + " MACs (" + si(it[MACS]) + ", " + pct(it[MACS]) + " of the model)");
    if (it[KIND] === "c") line(tip, it[COUNT] + " ops inside · click to " + (open[i] ? "collapse" : "expand"), "row");
    if (it[KIND] === "m") line(tip, "not expandable: the graph was too large to keep this module's ops", "row");
    if (layer) {
      line(tip, layer[1] + " conv · " + (layer[2] ? "candidate: " + si(layer[4]) + " MACs predicted after DW→PW (m = 1)" : "not a candidate"));
      line(tip, "click: show row #" + (it[LAYER] + 1) + " in the table", "row");
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
  box.addEventListener("mouseleave", function () { if (tip) tip.hidden = true; });
  box.addEventListener("mouseout", function (e) { if (target(e) >= 0 && tip && !box.contains(e.relatedTarget)) tip.hidden = true; });

  draw();
  box.style.height = Math.round(Math.max(260, Math.min(H[0] + 24, window.innerHeight * 0.8))) + "px";
  fit(true);
}
