// The services view refreshes its rows in place every few seconds.
import { el, every, getJSON, ms } from "./common.js";

const REFRESH_SECONDS = 3;

function workers(counts) {
  const entries = Object.entries(counts);
  if (!entries.length) return [el("span", { class: "muted" }, "none")];
  return entries.map(([state, n]) => el("span", { class: "chip" }, `${n} ${state.toLowerCase()}`));
}

function fill(row, s) {
  const f = (name) => row.querySelector(`[data-field="${name}"]`);
  const link = f("link");
  link.textContent = s.name;
  link.href = `/console/endpoints/${encodeURIComponent(s.name)}`;
  const state = f("state");
  state.textContent = s.state;
  state.className = `badge state-${s.state.toLowerCase()}`;
  f("message").textContent = s.message;
  f("version").textContent = s.version;
  f("origin").textContent = s.origin;
  f("workers").replaceChildren(...workers(s.workers));
  f("queued").textContent = s.queued;
  f("jobs_last_hour").textContent = s.jobs_last_hour;
  f("p50_delay_ms").textContent = ms(s.p50_delay_ms);
  f("p50_execution_ms").textContent = ms(s.p50_execution_ms);
}

function newRow(s) {
  const row = document.getElementById("row-template").content.firstElementChild.cloneNode(true);
  row.dataset.endpoint = s.name;
  for (const form of row.querySelectorAll("form[data-action]")) {
    form.action = `/console/endpoints/${encodeURIComponent(s.name)}/${form.dataset.action}`;
    const button = form.querySelector("button");
    button.setAttribute("aria-label", `${button.textContent} ${s.name}`);
  }
  return row;
}

async function refresh() {
  const rows = await getJSON("/console/api/services");
  const body = document.querySelector("#services tbody");
  const existing = new Map([...body.querySelectorAll("tr[data-endpoint]")].map((r) => [r.dataset.endpoint, r]));
  const ordered = rows.map((s) => {
    const row = existing.get(s.name) || newRow(s);
    existing.delete(s.name);
    fill(row, s);
    return row;
  });
  for (const gone of existing.values()) gone.remove();
  // Rows already in place are not moved (moving one would take keyboard focus from its buttons).
  ordered.forEach((row, i) => {
    if (body.children[i] !== row) body.insertBefore(row, body.children[i] || null);
  });
  if (rows.length) document.getElementById("no-services")?.remove();
}

export function start() {
  every(REFRESH_SECONDS, refresh, document.getElementById("refreshed"));
}
