// The forgetd dashboard: polls /dashboard.json and draws what it says. No libraries, nothing fetched from
// anywhere but this server. The throughput chart is the rate between consecutive polls of the counters;
// the retrain chart and the table are the ledger's last forget.applied entries.
"use strict";

const POLL_MS = Number(new URLSearchParams(location.search).get("interval")) || 2000;
const KEEP = 90; // throughput points kept (three minutes at the default interval)
const COLORS = ["#2f6fed", "#12805c", "#c4320a", "#7a5af8", "#b54708", "#0e9384", "#dd2590", "#475467"];
const SVG_NS = "http://www.w3.org/2000/svg";

const rates = []; // {t, ok, failed}: requests per second between two polls
let previous = null;

function $(id) { return document.getElementById(id); }
function text(id, value) { $(id).textContent = value; }
function short(hex) { return hex ? hex.slice(0, 16) + "\u2026" : "\u2013"; }
function fixed(x, digits) { return Number(x).toFixed(digits); }
function clock(seconds) { return new Date(seconds * 1000).toLocaleTimeString([], { hour12: false }); }

function svgEl(name, attrs, content) {
  const el = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (content !== undefined) el.textContent = content;
  return el;
}

function niceMax(value) {
  if (!(value > 0)) return 1;
  const step = Math.pow(10, Math.floor(Math.log10(value)));
  for (const m of [1, 2, 2.5, 5, 10]) if (value <= m * step) return m * step;
  return 10 * step;
}

// series: [{color, points: [[x, y]...], dots}], xs: [min, max], label(x) for the x axis ticks.
function chart(svg, series, xs, label, emptyNote) {
  svg.replaceChildren();
  const W = 560, H = 220, L = 48, R = 12, T = 10, B = 26, P = 8; // P: room for a point at either end
  const ys = series.flatMap(s => s.points.map(p => p[1]));
  if (ys.length === 0) {
    svg.append(svgEl("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "note" }, emptyNote));
    return;
  }
  const top = niceMax(Math.max(...ys));
  const [x0, x1] = xs[0] === xs[1] ? [xs[0] - 1, xs[1] + 1] : xs;
  const px = x => L + P + (x - x0) / (x1 - x0) * (W - L - R - 2 * P);
  const py = y => T + (1 - y / top) * (H - T - B);
  for (let i = 0; i <= 4; i++) {
    const y = top * i / 4;
    svg.append(svgEl("line", { x1: L, x2: W - R, y1: py(y), y2: py(y), class: "grid" }));
    svg.append(svgEl("text", { x: L - 6, y: py(y) + 4, "text-anchor": "end", class: "axis" }, +y.toPrecision(3)));
  }
  for (let i = 0; i <= 3; i++) {
    const x = x0 + (x1 - x0) * i / 3;
    svg.append(svgEl("text", { x: px(x), y: H - 8, "text-anchor": i === 0 ? "start" : i === 3 ? "end" : "middle",
                               class: "axis" }, label(x)));
  }
  for (const s of series) {
    if (s.points.length > 1) {
      const d = s.points.map((p, i) => (i ? "L" : "M") + fixed(px(p[0]), 1) + " " + fixed(py(p[1]), 1)).join(" ");
      svg.append(svgEl("path", { d, fill: "none", stroke: s.color, "stroke-width": 2, "stroke-linejoin": "round" }));
    }
    if (s.dots || s.points.length === 1) {
      for (const p of s.points) svg.append(svgEl("circle", { cx: px(p[0]), cy: py(p[1]), r: 3.5, fill: s.color }));
    }
  }
}

function renderCards(s) {
  const m = s.model, h = s.head, sla = s.sla, c = s.counters;
  text("model-version", "v" + m.version);
  text("model-digest", short(m.digest)); $("model-digest").title = m.digest;
  text("model-device", m.device);
  text("model-forgotten", m.forgotten_count + " samples");
  text("model-shape", m.shards + " shard" + (m.shards === 1 ? "" : "s") + ", m = " + m.threshold_m);
  text("model-default", m.default_strategy);
  text("head-size", h.size + " entries");
  text("head-root", short(h.merkle_root)); $("head-root").title = h.merkle_root;
  text("head-chain", short(h.chain_hash)); $("head-chain").title = h.chain_hash;
  text("head-key", short(h.public_key)); $("head-key").title = h.public_key;
  text("model-seq", "seq " + m.ledger_seq);
  const state = $("sla-state");
  state.textContent = sla.breached ? "breached" : sla.target_seconds === null ? "no target" : "met";
  state.className = "big " + (sla.breached ? "bad" : sla.target_seconds === null ? "" : "ok");
  text("sla-mean", sla.batches ? fixed(sla.mean_seconds * 1000, 1) + " ms" : "\u2013");
  text("sla-target", sla.target_seconds === null ? "none" : fixed(sla.target_seconds * 1000, 1) + " ms");
  text("sla-window", sla.batches + " of " + sla.window + " batches");
  text("queue-depth", c.queue_depth + " queued");
  text("forgets-acked", c.acknowledged);
  text("forgets-applied", c.applied);
  text("inference-ok", c.inference_success);
  text("inference-failed", c.inference_failure);
  const pill = $("status");
  pill.textContent = sla.breached ? "SLA breached" : "serving";
  pill.className = "pill " + (sla.breached ? "bad" : "ok");
  text("updated", "updated " + clock(s.time));
}

function renderThroughput(s) {
  if (previous && s.time > previous.time) {
    const dt = s.time - previous.time;
    rates.push({ t: s.time,
                 ok: Math.max(0, s.counters.inference_success - previous.counters.inference_success) / dt,
                 failed: Math.max(0, s.counters.inference_failure - previous.counters.inference_failure) / dt });
    if (rates.length > KEEP) rates.shift();
  }
  previous = s;
  const xs = rates.length ? [rates[0].t, rates[rates.length - 1].t] : [0, 1];
  const ago = x => {
    const d = xs[1] - x;
    return d < 0.05 ? "now" : "\u2212" + (d < 10 ? d.toFixed(1) : Math.round(d)) + " s";
  };
  chart($("chart-throughput"),
        [{ color: COLORS[0], points: rates.map(r => [r.t, r.ok]) },
         { color: COLORS[2], points: rates.filter(r => r.failed > 0).map(r => [r.t, r.failed]), dots: true }],
        xs, ago, "measuring (the rate needs two polls)");
}

function renderRetrains(s) {
  // A batch that retrained several shards has one time for all of them (the engine times the batch): spread
  // its points a little apart along x so that each shard's stays visible.
  const byShard = new Map();
  s.forgets.forEach(f => f.retrained_shards.forEach((k, i, all) => {
    if (!byShard.has(k)) byShard.set(k, []);
    byShard.get(k).push([f.seq + (i - (all.length - 1) / 2) * 0.3, f.apply_ms]);
  }));
  const shards = [...byShard.keys()].sort((a, b) => a - b);
  const series = shards.map(k => ({ color: COLORS[k % COLORS.length], points: byShard.get(k), dots: true }));
  const seqs = s.forgets.map(f => f.seq);
  const xs = seqs.length ? [Math.min(...seqs), Math.max(...seqs)] : [0, 1];
  chart($("chart-retrain"), series, xs, x => "seq " + Math.round(x), "no shard retrained in the last forgets");
  $("legend-retrain").replaceChildren(...shards.map(k => {
    const span = document.createElement("span");
    const mark = document.createElement("i");
    mark.style.background = COLORS[k % COLORS.length];
    span.append(mark, "shard " + k + " (" + byShard.get(k).length + ")");
    return span;
  }));
}

function cell(row, value, cls) {
  const td = row.insertCell();
  td.textContent = value;
  if (cls) td.className = cls;
  return td;
}

function renderForgets(s) {
  const body = $("forgets").tBodies[0];
  body.replaceChildren();
  if (s.forgets.length === 0) {
    cell(body.insertRow(), "no forget applied yet", "empty").colSpan = 11;
    return;
  }
  for (const f of [...s.forgets].reverse()) {
    const row = body.insertRow();
    cell(row, f.seq);
    cell(row, clock(Date.parse(f.recorded_at) / 1000));
    cell(row, "v" + f.version);
    cell(row, f.requested);
    cell(row, f.strategy, "strategy");
    const badge = document.createElement("span");
    badge.className = "badge " + f.guarantee;
    badge.textContent = f.guarantee;
    row.insertCell().append(badge);
    cell(row, f.requests, "num");
    cell(row, f.samples, "num");
    cell(row, fixed(f.apply_ms, 1), "num");
    cell(row, fixed(f.queued_ms, 1), "num");
    cell(row, f.retrained_shards.length ? f.retrained_shards.join(", ") : "none");
  }
}

async function poll() {
  try {
    const answer = await fetch("/dashboard.json", { cache: "no-store" });
    if (!answer.ok) throw new Error((await answer.json()).error || answer.statusText);
    const s = await answer.json();
    renderCards(s);
    renderThroughput(s);
    renderRetrains(s);
    renderForgets(s);
  } catch (err) {
    const pill = $("status");
    pill.textContent = "unreachable: " + err.message;
    pill.className = "pill bad";
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

poll();
