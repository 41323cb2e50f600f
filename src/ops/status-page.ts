/**
 * The status page served at "/" by the ops listener: plain HTML, CSS and a little JS, no
 * framework, no external assets (it must work on an air-gapped node). It polls /status.json
 * once a second and redraws: readiness and why, the mesh (this node and a line per peer link,
 * coloured by phase), per-peer lag and bootstrap progress bars, the store, the staging budget
 * and recent warnings/errors. All data is inserted as text (textContent), never as HTML.
 *
 * Kept as a string constant so the build needs no asset copying.
 */

/** Poll interval of the page, ms. */
export const STATUS_PAGE_POLL_MS = 1000;

export const STATUS_PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Granary node status</title>
<style>
  :root { --fg:#1d2430; --muted:#667085; --bg:#f6f7f9; --card:#fff; --line:#e3e6eb;
          --ok:#1f9d55; --warn:#d97706; --bad:#dc2626; --info:#2563eb; --idle:#98a2b3; }
  * { box-sizing: border-box; }
  body { margin:0; font:14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color:var(--fg); background:var(--bg); }
  header { display:flex; align-items:center; gap:16px; padding:14px 24px; background:var(--card); border-bottom:1px solid var(--line); flex-wrap:wrap; }
  header h1 { font-size:18px; margin:0; }
  .muted { color:var(--muted); }
  .badge { display:inline-block; padding:2px 10px; border-radius:999px; font-weight:600; font-size:12px; letter-spacing:.03em; color:#fff; background:var(--idle); }
  .badge.ok { background:var(--ok); } .badge.bad { background:var(--bad); } .badge.warn { background:var(--warn); } .badge.info { background:var(--info); }
  main { display:grid; grid-template-columns: minmax(280px, 360px) 1fr; gap:16px; padding:16px 24px; }
  section { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:14px 16px; }
  section h2 { font-size:13px; text-transform:uppercase; letter-spacing:.06em; color:var(--muted); margin:0 0 10px; }
  .wide { grid-column: 1 / -1; }
  table { width:100%; border-collapse:collapse; }
  th, td { text-align:left; padding:6px 8px; border-bottom:1px solid var(--line); vertical-align:top; }
  th { font-size:12px; color:var(--muted); font-weight:600; }
  .bar { position:relative; height:14px; background:#eef0f3; border-radius:7px; overflow:hidden; min-width:120px; }
  .bar > span { position:absolute; left:0; top:0; bottom:0; background:var(--info); border-radius:7px; }
  .bar.behind > span { background:var(--warn); }
  .bar.synced > span { background:var(--ok); }
  .stale { color:var(--muted); word-break:break-word; }
  .bar-label { font-size:12px; color:var(--muted); }
  dl { display:grid; grid-template-columns:auto 1fr; gap:4px 12px; margin:0; }
  dt { color:var(--muted); } dd { margin:0; font-variant-numeric: tabular-nums; }
  #mesh svg { width:100%; height:auto; }
  .err { color:var(--bad); word-break:break-word; }
  ul.events { list-style:none; margin:0; padding:0; max-height:320px; overflow:auto; }
  ul.events li { padding:6px 0; border-bottom:1px solid var(--line); }
  #conn { margin-left:auto; font-size:12px; }
  code { font-size:12px; }
</style>
</head>
<body>
<header>
  <h1>Granary <span id="node-id" class="muted">…</span></h1>
  <span id="ready-badge" class="badge">…</span>
  <span id="ready-reason" class="muted"></span>
  <span id="conn" class="muted">connecting…</span>
</header>
<main>
  <section id="mesh"><h2>Mesh</h2><svg id="mesh-svg" viewBox="0 0 320 240" role="img" aria-label="mesh"></svg>
    <div id="mesh-legend" class="muted"></div></section>
  <section><h2>Node</h2><dl id="node-facts"></dl></section>
  <section class="wide"><h2>Peers</h2>
    <table id="peers"><thead><tr><th>peer</th><th>phase</th><th>lag</th><th>bootstrap</th><th>fetched</th><th>last error</th></tr></thead><tbody></tbody></table>
    <p id="no-peers" class="muted" hidden>No peers: this node runs alone.</p>
  </section>
  <section class="wide"><h2>Recent warnings and errors</h2><ul id="events" class="events"></ul><p id="no-events" class="muted">None.</p></section>
</main>
<script>
"use strict";
var POLL_MS = ${STATUS_PAGE_POLL_MS};
var PHASE_COLORS = { following: "var(--ok)", bootstrapping: "var(--info)", connecting: "var(--idle)", backoff: "var(--warn)", unreachable: "var(--bad)", unspecified: "var(--idle)" };
function el(tag, text, cls) { var e = document.createElement(tag); if (text !== undefined) e.textContent = text; if (cls) e.className = cls; return e; }
function num(v) { return Number(v || 0); }
function bytes(n) { n = num(n); var u = ["B","KiB","MiB","GiB","TiB"]; var i = 0; while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; } return (i ? n.toFixed(1) : String(n)) + " " + u[i]; }
function dur(s) { s = num(s); if (!(s > 0)) return "–"; if (s < 60) return s.toFixed(0) + "s"; if (s < 3600) return Math.floor(s / 60) + "m" + Math.round(s % 60) + "s"; return Math.floor(s / 3600) + "h" + Math.round((s % 3600) / 60) + "m"; }
function phaseName(p) { return String(p || "PEER_PHASE_UNSPECIFIED").replace("PEER_PHASE_", "").toLowerCase(); }
function bar(frac, label, cls) {
  var wrap = el("div"); var b = el("div", undefined, "bar" + (cls ? " " + cls : "")); var fill = el("span");
  fill.style.width = (Math.max(0, Math.min(1, frac)) * 100).toFixed(1) + "%"; b.appendChild(fill); wrap.appendChild(b);
  wrap.appendChild(el("div", label, "bar-label")); return wrap;
}
function facts(dl, rows) { dl.replaceChildren(); rows.forEach(function (r) { dl.appendChild(el("dt", r[0])); dl.appendChild(el("dd", r[1])); }); }
function drawMesh(s) {
  var svg = document.getElementById("mesh-svg"); var ns = "http://www.w3.org/2000/svg"; svg.replaceChildren();
  var cx = 160, cy = 120, r = 85, peers = s.peers || [];
  function node(x, y, label, color, id) {
    var c = document.createElementNS(ns, "circle"); c.setAttribute("cx", x); c.setAttribute("cy", y); c.setAttribute("r", 18); c.setAttribute("fill", color);
    if (id) c.setAttribute("data-peer", id); svg.appendChild(c);
    var t = document.createElementNS(ns, "text"); t.setAttribute("x", x); t.setAttribute("y", y + 30); t.setAttribute("text-anchor", "middle"); t.setAttribute("font-size", "11"); t.textContent = label; svg.appendChild(t);
  }
  peers.forEach(function (p, i) {
    var a = (2 * Math.PI * i) / Math.max(1, peers.length) - Math.PI / 2; var x = cx + r * Math.cos(a), y = cy + r * Math.sin(a);
    var l = document.createElementNS(ns, "line"); l.setAttribute("x1", cx); l.setAttribute("y1", cy); l.setAttribute("x2", x); l.setAttribute("y2", y);
    l.setAttribute("stroke", PHASE_COLORS[phaseName(p.phase)] || "var(--idle)"); l.setAttribute("stroke-width", "3"); svg.insertBefore(l, svg.firstChild);
    node(x, y, p.nodeId || p.address, PHASE_COLORS[phaseName(p.phase)] || "var(--idle)", p.address);
  });
  node(cx, cy, s.nodeId + " (this node)", s.ready ? "var(--ok)" : "var(--warn)");
  document.getElementById("mesh-legend").textContent = peers.length + " peer link(s): " + peers.map(function (p) { return (p.nodeId || p.address) + " " + phaseName(p.phase); }).join(", ");
}
function render(doc) {
  var s = doc.status, u = s.store || {};
  document.getElementById("node-id").textContent = s.nodeId;
  var badge = document.getElementById("ready-badge"); badge.textContent = s.ready ? "READY" : "NOT READY"; badge.className = "badge " + (s.ready ? "ok" : "bad");
  badge.setAttribute("data-ready", s.ready ? "true" : "false");
  document.getElementById("ready-reason").textContent = s.readinessReason;
  var st = doc.staging, bw = doc.bandwidth, rp = doc.repairs;
  facts(document.getElementById("node-facts"), [
    ["incarnation", s.incarnation], ["version", s.version], ["public", s.publicAddress], ["peer", s.peerAddress || "(peer plane off)"],
    ["store", bytes(u.liveBytes) + " in " + num(u.artifactCount) + " artifacts, " + num(u.segmentCount) + " segments"],
    ["capacity", num(u.capacityBytes) > 0 ? bytes(u.capacityBytes) + " (" + (100 * num(u.liveBytes) / num(u.capacityBytes)).toFixed(0) + "% used)" : "unbounded"],
    ["evicted", String(num(u.evictedCount))], ["feed", "head " + s.feedHead + ", floor " + s.feedFloor],
    ["staging", st ? bytes(st.reservedBytes) + " of " + bytes(st.budgetBytes) + (st.waiting ? ", " + st.waiting + " waiting" : "") : "–"],
    ["bandwidth", bw ? (bw.limitBytesPerSecond > 0 ? bytes(bw.limitBytesPerSecond) + "/s, throttled " + dur(bw.throttledSeconds) : "unlimited") : "–"],
    ["lost bodies", rp ? rp.repaired + " fetched again" + (rp.pending ? ", " + rp.pending + " pending" : "") + (rp.gaveUp ? ", " + rp.gaveUp + " given up" : "") + (rp.refused ? ", " + rp.refused + " refused" : "") : "–"],
    ["up since", new Date(num(s.startedAtMs)).toLocaleString()]
  ]);
  drawMesh(s);
  var tbody = document.querySelector("#peers tbody"); tbody.replaceChildren();
  (s.peers || []).forEach(function (p) {
    var tr = el("tr"); tr.setAttribute("data-peer", p.address);
    var who = el("td"); who.appendChild(el("div", p.nodeId || "?")); who.appendChild(el("code", p.address, "muted")); tr.appendChild(who);
    var ph = phaseName(p.phase); var phTd = el("td"); var b = el("span", ph, "badge"); b.setAttribute("data-phase", ph);
    b.style.background = PHASE_COLORS[ph] || "var(--idle)"; phTd.appendChild(b); tr.appendChild(phTd);
    var head = num(p.headSeq), cur = num(p.cursorSeq);
    var behind = num(p.lagChanges) > 0;
    var lagTd = el("td"); lagTd.appendChild(bar(head > 0 ? cur / head : 1, behind ? num(p.lagChanges) + " changes behind, " + num(p.lagSeconds).toFixed(1) + "s (cursor " + cur + "/" + head + ")" : "in sync (cursor " + cur + "/" + head + ")", behind ? "behind" : "synced")); tr.appendChild(lagTd);
    var bootTd = el("td"); var tb = num(p.bootstrapTotalBytes), db = num(p.bootstrapDoneBytes), ta = num(p.bootstrapTotalArtifacts), da = num(p.bootstrapDoneArtifacts);
    if (ph === "bootstrapping") bootTd.appendChild(bar(tb > 0 ? db / tb : (ta > 0 ? da / ta : 0), bytes(db) + " / " + bytes(tb) + ", " + da + "/" + ta + " artifacts, ETA " + dur(p.etaSeconds)));
    else bootTd.appendChild(el("span", ph === "following" ? "done" : "–", "muted"));
    tr.appendChild(bootTd);
    tr.appendChild(el("td", bytes(p.bytesFetched) + " in " + num(p.artifactsFetched) + " artifacts, " + bytes(p.rateBytesPerSecond) + "/s" + (num(p.failedCount) ? ", " + num(p.failedCount) + " failed" : "")));
    // A healthy link keeps its last error for the record; show it as history, not as an alarm.
    var healthy = ph === "following" && !behind;
    tr.appendChild(el("td", p.lastError ? (healthy ? "earlier: " : "") + p.lastError : "", p.lastError ? (healthy ? "stale" : "err") : ""));
    tbody.appendChild(tr);
  });
  document.getElementById("no-peers").hidden = (s.peers || []).length > 0;
  var list = document.getElementById("events"); list.replaceChildren();
  (doc.recentEvents || []).forEach(function (e) {
    var li = el("li"); li.appendChild(el("span", new Date(e.time).toLocaleTimeString() + " ", "muted"));
    li.appendChild(el("span", e.level.toUpperCase(), "badge " + (e.level === "warn" ? "warn" : "bad"))); li.appendChild(document.createTextNode(" "));
    li.appendChild(el("code", e.event)); li.appendChild(document.createTextNode(" " + e.msg + (e.cause && e.msg.indexOf(e.cause) < 0 ? " — " + e.cause : "")));
    list.appendChild(li);
  });
  document.getElementById("no-events").hidden = (doc.recentEvents || []).length > 0;
  document.body.setAttribute("data-updated", String(doc.generatedAtMs));
}
function poll() {
  fetch("status.json", { cache: "no-store" }).then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
    .then(function (doc) { render(doc); var c = document.getElementById("conn"); c.textContent = "updated " + new Date().toLocaleTimeString(); c.className = "muted"; })
    .catch(function (e) { var c = document.getElementById("conn"); c.textContent = "node unreachable (" + e.message + "); retrying"; c.className = "err"; })
    .then(function () { setTimeout(poll, POLL_MS); });
}
poll();
</script>
</body>
</html>
`;
