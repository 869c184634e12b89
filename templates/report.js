/* convaudit report: sortable tables, layer filter, graph view.
 * Vanilla JS, no network. Text from the model (layer names, op labels) only ever reaches the page
 * through textContent / setAttribute, never through innerHTML. The graph view is graph.js. */
(function () {
  "use strict";

  function $(id) { return document.getElementById(id); }
  function each(list, fn) { Array.prototype.forEach.call(list, fn); }

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

  /* Each part runs on its own: one failing part is reported (see <head>) and the others still work. */
  var graph = function () { if (typeof convauditGraph === "function") convauditGraph(showLayer); };
  [function () { each(document.querySelectorAll("table.sortable"), makeSortable); }, setupFilter, graph].forEach(function (part) {
    try { part(); } catch (err) { console.error("convaudit report: " + (err && err.stack || err)); }
  });
  document.documentElement.setAttribute("data-report-ready", "ok");
})();
