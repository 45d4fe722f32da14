// Small helpers shared by the console's pages. Everything user- or service-written is put in the
// page with textContent (never innerHTML), so it shows as text.

export function csrf() {
  return document.querySelector('meta[name="csrf-token"]').content;
}

/** GET a console JSON answer; a signed-out session sends the browser to sign in. */
export async function getJSON(url) {
  const r = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
  if (r.status === 401) {
    window.location.assign("/console/login");
    throw new Error("signed out");
  }
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
  return body;
}

export async function postJSON(url, data) {
  const r = await fetch(url, {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf(), Accept: "application/json" },
    body: JSON.stringify(data),
  });
  if (r.status === 401) {
    window.location.assign("/console/login");
    throw new Error("signed out");
  }
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
  return body;
}

/** el("td", {class: "num"}, "text", childNode) */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v !== null && v !== undefined) node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : String(c));
  return node;
}

export function ms(v) {
  if (v === null || v === undefined) return "–";
  return v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${Math.round(v)} ms`;
}

/** Calls `fn` now and every `seconds` while the page is visible; errors are shown in `status`. */
export function every(seconds, fn, status) {
  const tick = async () => {
    if (!document.hidden) {
      try {
        await fn();
        if (status) status.textContent = `Updated ${new Date().toLocaleTimeString()}.`;
      } catch (err) {
        if (status) status.textContent = `Could not refresh: ${err.message}`;
      }
    }
    setTimeout(tick, seconds * 1000);
  };
  tick();
}

export function wireCopyButtons(root) {
  for (const button of root.querySelectorAll("button[data-copy]")) {
    button.addEventListener("click", async () => {
      const text = document.getElementById(button.dataset.copy).textContent;
      try {
        await navigator.clipboard.writeText(text);
        button.textContent = "Copied";
      } catch {
        button.textContent = "Select and copy";
      }
      setTimeout(() => { button.textContent = "Copy"; }, 2000);
    });
  }
}

export function wireAutosubmit(root) {
  for (const select of root.querySelectorAll("select[data-autosubmit]")) {
    select.addEventListener("change", () => select.form.requestSubmit());
  }
}
