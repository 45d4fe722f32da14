// An endpoint's page: charts of the last hour drawn as inline SVG, and a live tail of its logs.
import { el, every, getJSON } from "./common.js";

const SVG = "http://www.w3.org/2000/svg";
const W = 360, H = 140, PAD = { l: 34, r: 8, t: 10, b: 18 };
const LOG_LINES = 1000;

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

function axes(chart, max, unit) {
  chart.setAttribute("viewBox", `0 0 ${W} ${H}`);
  chart.replaceChildren();
  const y = (v) => H - PAD.b - (v / max) * (H - PAD.t - PAD.b);
  for (const v of [0, max / 2, max]) {
    chart.append(svg("line", { class: "grid", x1: PAD.l, x2: W - PAD.r, y1: y(v), y2: y(v) }));
    const label = svg("text", { class: "axis", x: PAD.l - 4, y: y(v) + 3, "text-anchor": "end" });
    label.textContent = `${Number.isInteger(v) ? v : v.toFixed(1)}${unit}`;
    chart.append(label);
  }
  for (const [x, text] of [[PAD.l, "-60 min"], [W - PAD.r, "now"]]) {
    const label = svg("text", { class: "axis", x, y: H - 4, "text-anchor": x === PAD.l ? "start" : "end" });
    label.textContent = text;
    chart.append(label);
  }
  return y;
}

// points[i] is i minutes ago; drawn oldest on the left.
const xOf = (i, n) => PAD.l + ((n - 1 - i) / (n - 1)) * (W - PAD.l - PAD.r);

function bars(chart, points, field) {
  const max = 2 * Math.ceil(Math.max(1, ...points.map((p) => p[field])) / 2);  // whole-number labels
  const y = axes(chart, max, "");
  const width = (W - PAD.l - PAD.r) / points.length - 1;
  points.forEach((p, i) => {
    if (!p[field]) return;
    chart.append(svg("rect", { class: "bar", x: xOf(i, points.length) - width / 2, y: y(p[field]),
      width: Math.max(1, width), height: H - PAD.b - y(p[field]) }));
  });
}

function lines(chart, points) {
  const values = points.flatMap((p) => [p.p50_ms, p.p99_ms]).filter((v) => v !== null);
  const max = Math.ceil(Math.max(1, ...values));
  const y = axes(chart, max, "ms");
  for (const [field, cls] of [["p99_ms", "line-p99"], ["p50_ms", "line-p50"]]) {
    const d = points.map((p, i) => (p[field] === null ? null : `${xOf(i, points.length)},${y(p[field])}`))
      .filter(Boolean);
    if (d.length) chart.append(svg("polyline", { class: cls, points: d.join(" ") }));
    for (const xy of d) {
      const [cx, cy] = xy.split(",");
      chart.append(svg("circle", { class: cls, cx, cy, r: 2 }));
    }
  }
}

async function drawCharts(name) {
  const points = await getJSON(`/console/api/endpoints/${encodeURIComponent(name)}/charts`);
  bars(document.getElementById("chart-requests"), points, "requests");
  lines(document.getElementById("chart-latency"), points);
  bars(document.getElementById("chart-cold"), points, "cold_starts");
}

function tailer(name) {
  let offsets = "";
  const pre = document.getElementById("logs");
  return async () => {
    const url = `/console/api/endpoints/${encodeURIComponent(name)}/logs?offsets=${encodeURIComponent(offsets)}`;
    const body = await getJSON(url);
    offsets = body.offsets;
    if (!body.lines.length) return;
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    const kept = (pre.textContent ? pre.textContent.split("\n") : []).concat(body.lines).slice(-LOG_LINES);
    pre.textContent = kept.join("\n");
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  };
}

const utc = (t) => `${new Date(t * 1000).toISOString().slice(0, 19).replace("T", " ")} UTC`;

/** The state badge and the workers table, as they are now. */
async function refreshState(name) {
  const ep = await getJSON(`/console/api/endpoints/${encodeURIComponent(name)}`);
  const badge = document.getElementById("ep-state");
  badge.textContent = ep.state;
  badge.className = `badge state-${ep.state.toLowerCase()}`;
  const rows = ep.workers.map((w) => el("tr", {},
    el("td", {}, el("code", {}, w.id)), el("td", {}, el("span", { class: "badge" }, w.state)),
    el("td", {}, utc(w.started_at)), el("td", { class: "num" }, w.jobs_done)));
  document.querySelector("#workers tbody").replaceChildren(...(rows.length ? rows
    : [el("tr", {}, el("td", { colspan: "4", class: "muted" }, "No workers right now; one starts when a job arrives."))]));
}

export function start() {
  const name = document.getElementById("endpoint").dataset.endpoint;
  every(3, () => refreshState(name));
  every(15, () => drawCharts(name));
  every(2, tailer(name));
}
