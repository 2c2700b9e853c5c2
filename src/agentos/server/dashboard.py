"""The dashboard: one self-contained HTML page served at `/` by the daemon.

It holds no data and no token: the operator opens `http://127.0.0.1:PORT/#token=...`; the
fragment never leaves the browser, and the page sends the token in the Authorization
header of its own requests. Updates arrive over server-sent events (`/v1/stream`, read
with fetch so the header can be sent), at most 10 a second. Everything an agent wrote
(names, log lines, arguments) is put into the page with `textContent`, never as HTML.
"""
from __future__ import annotations

PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>agentos</title>
<style>
body{font:13px system-ui,sans-serif;margin:0;background:#111;color:#ddd}
header{padding:8px 12px;background:#222;display:flex;gap:16px;align-items:center}
main{display:grid;grid-template-columns:3fr 2fr;gap:10px;padding:10px}
section{background:#1a1a1a;border:1px solid #333;border-radius:4px;padding:8px;overflow:auto;max-height:46vh}
h2{font-size:13px;margin:10px 0 6px}h2:first-child{margin-top:0}
table{border-collapse:collapse;width:100%} td,th{padding:2px 6px;border-bottom:1px solid #2a2a2a;text-align:left}
.bar{display:inline-block;height:8px;background:#333;width:56px;vertical-align:middle}
.bar{display:inline-flex}.bar>i{display:block;height:8px;background:#4a8}.bar>i.held{background:#db4}
.waiting{color:#8ac}.running,.ready{color:#6d6}.up,.self{color:#6d6}.down,.fenced{color:#f66}.suspended{color:#db4}.exited{color:#888}
button{font-size:11px;margin-right:2px;padding:1px 4px}.nw{white-space:nowrap}
#err{color:#f66}
</style></head><body>
<header><b>agentos</b><span id="status">connecting…</span><span id="err"></span>
<input id="q" placeholder="search name or pid"><button id="prev">◀</button><span id="pageinfo"></span><button id="next">▶</button></header>
<main>
<section id="nodes-panel" style="grid-column:1/3" hidden><h2>cluster nodes</h2><table><thead><tr><th>node</th><th>state</th><th>incarnation</th><th>processes</th><th>lease age</th></tr></thead><tbody id="nodes"></tbody></table>
<h2>processes on other nodes</h2><table><thead><tr><th>node</th><th>pid</th><th>name</th><th>state</th><th>wait</th></tr></thead><tbody id="remote"></tbody></table></section>
<section><h2>processes</h2><table><thead><tr><th>pid</th><th>name</th><th>state</th><th>wait</th><th>tokens</th><th>tool calls</th><th>usd</th><th></th></tr></thead><tbody id="procs"></tbody></table>
<h2>by name and state</h2><table><tbody id="agg"></tbody></table></section>
<section><h2>pending approvals</h2><table><tbody id="approvals"></tbody></table>
<h2>audit</h2><div id="audit"></div>
<h2>cost per agent (usd)</h2><svg id="chart" width="420" height="140"></svg><div id="legend"></div></section>
<section style="grid-column:1/3"><h2>events <input id="fpid" placeholder="pid" size="5"> <input id="fkind" placeholder="kind" size="8"></h2>
<table><tbody id="events"></tbody></table></section>
</main>
<script>
"use strict";
const token = new URLSearchParams(location.hash.slice(1)).get("token") || "";
let page = 0, ctrl = null, series = {}, lastState = null, updates = 0;
const $ = (id) => document.getElementById(id);
function el(tag, text, cls) { const e = document.createElement(tag); if (text !== undefined) e.textContent = String(text); if (cls) e.className = cls; return e; }
function row(cells) { const tr = el("tr"); for (const c of cells) { const td = el("td"); if (c instanceof Node) td.appendChild(c); else td.textContent = c === null || c === undefined ? "" : String(c); tr.appendChild(td); } return tr; }
function num(v) { return typeof v === "number" && !Number.isInteger(v) ? v.toFixed(6) : String(v); }
function bar(b) {
  // used (green), reserved by operations in flight (amber), left (grey); ∞ when unlimited
  const used = b.used || 0, held = b.reserved || 0, left = b.left;
  const wrap = el("span", undefined, "nw"), box = el("span", undefined, "bar");
  const total = left === null || left === undefined ? null : used + held + left;
  const iu = el("i"), ir = el("i", undefined, "held");
  iu.style.width = total ? Math.min(100, 100 * used / total) + "%" : "0%";
  ir.style.width = total ? Math.min(100, 100 * held / total) + "%" : (held ? "4%" : "0%");
  box.appendChild(iu); box.appendChild(ir); wrap.appendChild(box);
  wrap.appendChild(el("span", " " + num(used) + (held ? " +" + num(held) + " held" : "") + " / " +
                   (left === null || left === undefined ? "∞" : num(left) + " left")));
  return wrap;
}
async function api(method, path, body) {
  const r = await fetch(path, {method, headers: {"Authorization": "Bearer " + token, "Content-Type": "application/json"}, body: body === undefined ? undefined : JSON.stringify(body)});
  const j = await r.json().catch(() => ({}));
  if (!r.ok) { $("err").textContent = j.error || ("HTTP " + r.status); throw new Error(j.error); }
  $("err").textContent = ""; return j;
}
function signal(pid, sig) { return api("POST", "/v1/procs/" + pid + "/signal", {signal: sig}); }
function answer(id, ok) { return api("POST", "/v1/approvals/" + encodeURIComponent(id), {approve: ok}); }
function button(label, fn, testid) { const b = el("button", label); b.dataset.testid = testid; b.addEventListener("click", fn); return b; }
function render(s) {
  lastState = s; updates++;
  document.body.dataset.updates = updates;
  $("status").textContent = s.live + " live processes, event " + s.seq;
  $("pageinfo").textContent = "rows " + (s.page * s.size + 1) + "–" + Math.min(s.total, (s.page + 1) * s.size) + " of " + s.total;
  const tb = $("procs"); tb.replaceChildren();
  for (const p of s.processes) {
    const acts = el("span", undefined, "nw");
    if (p.pid !== s.root) {
      acts.appendChild(button("kill", () => signal(p.pid, "KILL"), "kill-" + p.pid));
      acts.appendChild(button("stop", () => signal(p.pid, "STOP"), "stop-" + p.pid));
      acts.appendChild(button("cont", () => signal(p.pid, "CONT"), "cont-" + p.pid));
    }
    const tr = row([p.pid, p.name, el("span", p.state, p.state), p.wait, bar(p.budget.tokens),
                    bar(p.budget.tool_calls), bar(p.budget.usd), acts]);
    tr.dataset.pid = p.pid; tr.dataset.state = p.state; tb.appendChild(tr);
  }
  const np = $("nodes-panel"), nb = $("nodes"); nb.replaceChildren();
  np.hidden = !Array.isArray(s.nodes);
  for (const n of s.nodes || []) {
    const age = typeof n.lease_age === "number" ? n.lease_age.toFixed(1) + " s" : "?";
    const tr = row([n.node, el("span", n.state, n.state), n.incarnation, n.procs === null ? "?" : n.procs, age]);
    tr.dataset.node = n.node; tr.dataset.state = n.state; nb.appendChild(tr);
  }
  const rb = $("remote"); rb.replaceChildren();
  for (const r of s.remote || []) {
    const tr = row([r.node, r.pid, r.name, el("span", r.state, r.state), r.wait]);
    tr.dataset.remoteNode = r.node; tr.dataset.remotePid = r.pid; rb.appendChild(tr);
  }
  const ag = $("agg"); ag.replaceChildren();
  for (const a of s.aggregate) ag.appendChild(row([a.name, a.state, a.count]));
  const ap = $("approvals"); ap.replaceChildren();
  for (const r of s.approvals) {
    const acts = el("span");
    acts.appendChild(button("approve", () => answer(r.id, true), "approve-" + r.id));
    acts.appendChild(button("deny", () => answer(r.id, false), "deny-" + r.id));
    const tr = row([r.pid, r.process, r.action, JSON.stringify(r.args), r.rule, acts]); tr.dataset.approval = r.id; ap.appendChild(tr);
  }
  if (!s.approvals.length) ap.appendChild(row(["none pending"]));
  const a = s.audit;
  $("audit").textContent = !a.configured ? "no flight recorder configured on this daemon" :
    a.records + " records, " + a.durable + " durable, " + a.commits + " commits; last signed checkpoint: " +
    (a.last_checkpoint_size === null ? "none yet" : "records 1–" + a.last_checkpoint_size) +
    (a.checkpoint_errors ? "; " + a.checkpoint_errors + " checkpoint errors" : "");
  const ev = $("events"); ev.replaceChildren();
  for (const e of s.events.slice().reverse()) {
    const tr = row([e.seq, e.time.toFixed ? e.time.toFixed(1) : e.time, e.pid, e.kind, JSON.stringify(e.data).slice(0, 300)]);
    tr.dataset.kind = e.kind; ev.appendChild(tr);
  }
  const now = Date.now();
  for (const [name, usd] of Object.entries(s.cost)) { (series[name] = series[name] || []).push([now, usd]); if (series[name].length > 300) series[name].shift(); }
  chart();
}
function chart() {
  const svg = $("chart"); svg.replaceChildren(); const lg = $("legend"); lg.replaceChildren();
  const names = Object.keys(series); if (!names.length) return;
  let t0 = Infinity, t1 = -Infinity, m = 0;
  for (const n of names) for (const [t, v] of series[n]) { t0 = Math.min(t0, t); t1 = Math.max(t1, t); m = Math.max(m, v); }
  const W = 420, H = 140, colors = ["#4a8", "#8ac", "#db4", "#c6c", "#f66", "#6cf", "#fc6", "#9f9", "#aaa", "#f9c"];
  names.forEach((n, i) => {
    const pts = series[n].map(([t, v]) => ((t1 > t0 ? (t - t0) / (t1 - t0) : 1) * (W - 10) + 5).toFixed(1) + "," + (H - 5 - (m ? v / m : 0) * (H - 10)).toFixed(1)).join(" ");
    const pl = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    pl.setAttribute("points", pts); pl.setAttribute("fill", "none"); pl.setAttribute("stroke", colors[i % colors.length]); svg.appendChild(pl);
    const item = el("span", "■ " + n + " $" + series[n][series[n].length - 1][1] + "  "); item.style.color = colors[i % colors.length]; lg.appendChild(item);
  });
}
async function connect() {
  if (ctrl) ctrl.abort();
  ctrl = new AbortController();
  const qs = new URLSearchParams({q: $("q").value, page: String(page)});
  if ($("fpid").value) qs.set("pid", $("fpid").value);
  if ($("fkind").value) qs.set("kind", $("fkind").value);
  try {
    const r = await fetch("/v1/stream?" + qs, {headers: {"Authorization": "Bearer " + token}, signal: ctrl.signal});
    if (!r.ok) { $("status").textContent = "refused: HTTP " + r.status + (token ? "" : " (open the page with #token=...)"); return; }
    $("status").textContent = "connected";
    const reader = r.body.getReader(); const dec = new TextDecoder(); let buf = "";
    for (;;) {
      const {value, done} = await reader.read(); if (done) break;
      buf += dec.decode(value, {stream: true});
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const frame = buf.slice(0, i); buf = buf.slice(i + 2);
        const data = frame.split("\n").filter(l => l.startsWith("data: ")).map(l => l.slice(6)).join("\n");
        if (data) render(JSON.parse(data));
      }
    }
    $("status").textContent = "disconnected";
  } catch (e) { if (e.name !== "AbortError") $("status").textContent = "disconnected: " + e.message; }
}
let debounce = null;
for (const id of ["q", "fpid", "fkind"]) $(id).addEventListener("input", () => { clearTimeout(debounce); page = 0; debounce = setTimeout(connect, 250); });
$("prev").addEventListener("click", () => { if (page > 0) { page--; connect(); } });
$("next").addEventListener("click", () => { if (lastState && (page + 1) * lastState.size < lastState.total) { page++; connect(); } });
connect();
</script></body></html>
"""
