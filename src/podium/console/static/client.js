// The HTTP client: sends through the console (which adds the signed-in key), shows the answer as
// raw text, a collapsible JSON tree and YAML, and keeps a history in this browser.
import { el, ms, postJSON } from "./common.js";

const HISTORY_KEY = "podium-console-client-history";
const HISTORY_MAX = 50;
const STORED_BODY_MAX = 64 * 1024;

// -- rendering -------------------------------------------------------------------------------

function scalar(value) {
  if (typeof value === "string") return el("span", { class: "str" }, JSON.stringify(value));
  if (typeof value === "number") return el("span", { class: "num" }, String(value));
  return el("span", { class: "lit" }, String(value));
}

/** A collapsible tree of a parsed JSON value (<details> per object and array). */
export function jsonTree(value, key = null, depth = 0) {
  const label = key === null ? [] : [el("span", { class: "key" }, JSON.stringify(key)), ": "];
  if (value === null || typeof value !== "object") {
    return el("div", { class: "leaf" }, ...label, scalar(value));
  }
  const entries = Array.isArray(value) ? value.map((v, i) => [i, v]) : Object.entries(value);
  const open = Array.isArray(value) ? "[" : "{";
  const details = el("details", depth < 2 ? { open: "" } : {},
    el("summary", {}, ...label, `${open} ${entries.length} ${entries.length === 1 ? "item" : "items"}`));
  for (const [k, v] of entries) details.append(jsonTree(v, Array.isArray(value) ? k : String(k), depth + 1));
  return details;
}

function yamlScalar(v) {
  if (v === null) return "null";
  if (typeof v !== "string") return String(v);
  return /^[A-Za-z0-9_./ -]+$/.test(v) && !/^(true|false|null|yes|no|~|[0-9.+-].*)$/i.test(v) && v.trim() === v
    ? v : JSON.stringify(v);
}

/** YAML text of a parsed JSON value (block style; strings quoted when they need it). */
export function toYaml(value, indent = "") {
  if (value === null || typeof value !== "object") return yamlScalar(value);
  const entries = Array.isArray(value) ? value.map((v) => [null, v]) : Object.entries(value);
  if (!entries.length) return Array.isArray(value) ? "[]" : "{}";
  return entries.map(([k, v]) => {
    const head = k === null ? `${indent}- ` : `${indent}${yamlScalar(k)}:`;
    if (v !== null && typeof v === "object" && Object.keys(v).length) {
      return `${head}\n${toYaml(v, indent + "  ")}`;
    }
    return `${head}${k === null ? "" : " "}${toYaml(v, indent + "  ")}`;
  }).join("\n");
}

function tabs(views) {
  const bar = el("div", { class: "tabs", role: "tablist" });
  const panels = el("div");
  views.forEach(([name, panel], i) => {
    const button = el("button", { type: "button", role: "tab", "aria-selected": i === 0 ? "true" : "false" }, name);
    panel.hidden = i !== 0;
    panel.setAttribute("role", "tabpanel");
    panel.setAttribute("aria-label", name);
    button.addEventListener("click", () => {
      for (const b of bar.children) b.setAttribute("aria-selected", String(b === button));
      for (const p of panels.children) p.hidden = p !== panel;
    });
    bar.append(button);
    panels.append(panel);
  });
  return [bar, panels];
}

function showResponse(res) {
  const out = document.getElementById("response");
  const meta = el("div", { class: "resp-meta" },
    el("span", { class: `badge ${res.status < 400 ? "state-active" : "state-error"}`, id: "resp-status" }, `HTTP ${res.status}`),
    el("span", { id: "resp-time" }, ms(res.elapsed_ms)),
    el("span", { class: "muted" }, `${res.size.toLocaleString()} bytes`),
    el("span", { class: "muted" }, res.content_type || "no content type"));
  const headers = el("details", {}, el("summary", {}, `Headers (${res.headers.length})`),
    el("pre", { id: "resp-headers" }, res.headers.map(([k, v]) => `${k}: ${v}`).join("\n")));
  if (res.text === null) {
    out.replaceChildren(meta, headers, el("p", { class: "flash error", id: "resp-notice" }, res.notice));
    return;
  }
  const views = [["Raw", el("pre", { id: "resp-raw" }, res.text || "(empty body)")]];
  let parsed;
  try {
    parsed = JSON.parse(res.text);
  } catch {
    parsed = undefined;
  }
  if (parsed !== undefined) {
    views.push(["JSON", el("div", { class: "tree", id: "resp-tree" }, jsonTree(parsed))]);
    views.push(["YAML", el("pre", { id: "resp-yaml" }, toYaml(parsed))]);
  }
  out.replaceChildren(meta, headers, ...tabs(views));
}

function showError(message) {
  document.getElementById("response").replaceChildren(el("p", { class: "flash error", role: "alert" }, message));
}

// -- history ----------------------------------------------------------------------------------

function loadHistory() {
  try {
    return JSON.parse(localStorage.getItem(HISTORY_KEY)) || [];
  } catch {
    return [];
  }
}

function saveHistory(entries) {
  localStorage.setItem(HISTORY_KEY, JSON.stringify(entries.slice(0, HISTORY_MAX)));
}

function remember(request, res) {
  const stored = { ...res };
  if (stored.text !== null && stored.text.length > STORED_BODY_MAX) {
    stored.text = null;
    stored.notice = "This answer was too large to keep in the history; re-send it to see it.";
  }
  saveHistory([{ at: new Date().toISOString(), request, response: stored }, ...loadHistory()]);
  renderHistory();
}

function renderHistory() {
  const list = document.getElementById("history");
  const entries = loadHistory();
  list.replaceChildren(...entries.map((entry, i) => {
    const r = entry.request;
    const show = el("button", { type: "button", class: "small" }, "Show");
    show.addEventListener("click", () => showResponse(entry.response));
    const again = el("button", { type: "button", class: "small", "aria-label": `Re-send ${r.method} ${r.path}` }, "Re-send");
    again.addEventListener("click", () => { fillForm(r); send(r); });
    return el("li", { "data-index": i },
      el("span", { class: "badge" }, r.method),
      el("code", {}, `${r.endpoint}${r.path}`),
      el("span", { class: `badge ${entry.response.status < 400 ? "state-active" : "state-error"}` }, entry.response.status),
      el("span", { class: "muted" }, `${ms(entry.response.elapsed_ms)} · ${new Date(entry.at).toLocaleTimeString()}`),
      show, again);
  }));
  if (!entries.length) list.replaceChildren(el("li", { class: "muted" }, "No requests yet."));
}

// -- the form ---------------------------------------------------------------------------------

function readForm() {
  const f = document.getElementById("client-form");
  return { endpoint: f.endpoint.value, method: f.method.value, path: f.path.value || "/",
    headers: f.headers.value, body: f.body.value };
}

function fillForm(r) {
  const f = document.getElementById("client-form");
  f.endpoint.value = r.endpoint;
  f.method.value = r.method;
  f.path.value = r.path;
  f.headers.value = r.headers;
  f.body.value = r.body;
}

async function send(request) {
  document.getElementById("response").replaceChildren(el("p", { class: "muted" }, "Sending…"));
  try {
    const res = await postJSON("/console/api/client/send", request);
    showResponse(res);
    remember(request, res);
  } catch (err) {
    showError(err.message);
  }
}

export function start() {
  const form = document.getElementById("client-form");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    send(readForm());
  });
  document.getElementById("clear-history").addEventListener("click", () => {
    localStorage.removeItem(HISTORY_KEY);
    renderHistory();
  });
  renderHistory();
}
