// The kubinception console: plain ES module, no build step, no framework.
// Every read and write goes to the Kubernetes API of the admin cluster
// through the console's impersonating proxy (/kube/...), or to the few
// console endpoints (/console/api/...); the API server's own answers,
// validation messages included, are shown as they come.

const API = "/kube/apis/kubinception.dev/v1alpha1";
const main = document.getElementById("main");
let session = null;
let cleanups = [];

// h builds an element; text is always set as text, never parsed as HTML.
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function toast(msg) {
  const t = document.getElementById("toast");
  t.textContent = msg;
  setTimeout(() => { if (t.textContent === msg) t.textContent = ""; }, 6000);
}

// ApiError carries the Kubernetes Status of a refused request.
class ApiError extends Error {
  constructor(status) {
    super(status.message || `request failed (${status.code})`);
    this.status = status;
  }
}

// api sends a request with the session's CSRF token and answers the
// parsed JSON, or throws an ApiError with the server's Status.
async function api(method, path, body, contentType = "application/json") {
  const headers = {};
  if (session && method !== "GET") headers["X-CSRF-Token"] = session.csrfToken;
  if (body !== undefined) headers["Content-Type"] = contentType;
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: "same-origin" });
  if (res.status === 401 && path !== "/console/api/session") {
    session = null;
    renderSignIn("Your session ended: sign in again.");
    throw new ApiError({ code: 401, message: "not signed in" });
  }
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!res.ok) throw new ApiError(data && data.kind === "Status" ? data : { code: res.status, message: text || res.statusText });
  return data;
}

// stream opens a server-sent event stream of a watch made as the user and
// calls on(type, data) for each event; it stops on a failure event.
function stream(params, on) {
  const es = new EventSource("/console/api/watch?" + new URLSearchParams(params));
  for (const type of ["list", "ADDED", "MODIFIED", "DELETED"]) {
    es.addEventListener(type, (e) => on(type, JSON.parse(e.data)));
  }
  es.addEventListener("failure", (e) => { es.close(); on("failure", JSON.parse(e.data)); });
  cleanups.push(() => es.close());
  return es;
}

function cond(obj, type) {
  return ((obj.status && obj.status.conditions) || []).find((c) => c.type === type);
}

function age(ts) {
  if (!ts) return "-";
  const s = Math.max(0, Math.round((Date.now() - new Date(ts).getTime()) / 1000));
  if (s < 120) return s + "s";
  if (s < 7200) return Math.round(s / 60) + "m";
  if (s < 172800) return Math.round(s / 3600) + "h";
  return Math.round(s / 86400) + "d";
}

function bytes(n) {
  if (!n) return "0 B";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return n.toFixed(i ? 1 : 0) + " " + u[i];
}

function usageBar(used, quota, label) {
  if (!quota) return used ? bytes(used) : "-";
  const pct = Math.min(100, Math.round((100 * used) / quota));
  // Set through the CSSOM: the content security policy refuses inline
  // style attributes.
  const fill = h("span");
  fill.style.width = `${pct}%`;
  return h("span", { title: label || `${bytes(used)} of ${bytes(quota)}` },
    h("span", { class: "bar", role: "img", "aria-label": `${pct}% used` }, fill),
    `${bytes(used)} / ${bytes(quota)}`);
}

function statusBadge(obj) {
  const ready = cond(obj, "Ready");
  const st = ready ? ready.status : "Unknown";
  const text = obj.metadata.deletionTimestamp ? "Deleting" : st === "True" ? "Ready" : st === "False" ? "Not ready" : "Pending";
  return h("span", {}, h("span", { class: "badge " + st, dataset: { ready: st } }, text),
    ready && ready.reason ? h("span", { class: "reason" }, " ", ready.reason) : null);
}

function clusterPath(ns, name) { return `${API}/namespaces/${encodeURIComponent(ns)}/tenantclusters/${encodeURIComponent(name)}`; }
function consolePath(ns, name, what) { return `/console/api/namespaces/${encodeURIComponent(ns)}/tenantclusters/${encodeURIComponent(name)}/${what}`; }

// defaultNamespace is where a service account lives, the namespace a
// team's account is usually bound in; "" (all namespaces) otherwise.
function defaultNamespace() {
  const stored = sessionStorage.getItem("namespace");
  if (stored !== null) return stored;
  const m = /^system:serviceaccount:([^:]+):/.exec(session.user.name);
  return m ? m[1] : "";
}

// ---- sign in ----

function renderSignIn(message) {
  document.getElementById("who").textContent = "";
  const err = h("p", { class: "form-error", id: "signin-error", role: "alert" }, message || "");
  const token = h("textarea", { id: "token", name: "token", rows: 4, autocomplete: "off", spellcheck: "false", "aria-describedby": "signin-error" });
  const form = h("form", { class: "stack", id: "signin", onsubmit: async (e) => {
    e.preventDefault();
    err.textContent = "";
    try {
      session = await api("POST", "/console/api/session", { token: token.value });
      token.value = "";
      route();
    } catch (ex) { err.textContent = ex.message; }
  } },
  h("label", { for: "token" }, "Bearer token",
    h("span", { class: "hint" }, "A token the admin cluster accepts: a service account's (kubectl create token NAME) or an OIDC ID token. It is checked with a TokenReview and never stored; the console then acts as you.")),
  token,
  h("div", { class: "actions" }, h("button", { class: "primary", type: "submit" }, "Sign in"),
    h("button", { type: "button", onclick: async () => {
      err.textContent = "";
      try { session = await api("POST", "/console/api/session", {}); route(); } catch (ex) { err.textContent = ex.message; }
    } }, "Sign in with my client certificate")),
  err);
  main.replaceChildren(h("h1", {}, "Sign in"), form);
  token.focus();
}

function renderWho() {
  const who = document.getElementById("who");
  who.replaceChildren(h("span", { id: "user" }, session.user.name),
    h("button", { type: "button", id: "signout", onclick: async () => {
      try { await api("DELETE", "/console/api/session"); } catch { /* signed out either way */ }
      session = null;
      renderSignIn("Signed out.");
    } }, "Sign out"));
}

// ---- cluster list ----

function renderList() {
  const nsInput = h("input", { id: "namespace", name: "namespace", value: defaultNamespace(), placeholder: "all namespaces", size: 18 });
  const msg = h("p", { id: "list-message", role: "status" });
  const body = h("tbody");
  const table = h("div", { class: "table-wrap" }, h("table", { id: "clusters" },
    h("thead", {}, h("tr", {}, ...["Name", "Namespace", "Version", "Status", "Endpoint", "Nodes", "Datastore usage", "Age"].map((t, i) =>
      h("th", { scope: "col", class: [1, 4, 5].includes(i) ? "hide-narrow" : null }, t)))), body));
  const items = new Map();
  const nodes = new Map();
  const key = (o) => o.metadata.namespace + "/" + o.metadata.name;
  const draw = () => {
    const rows = [...items.values()].sort((a, b) => key(a).localeCompare(key(b))).map((o) => {
      const ds = (o.status && o.status.datastore) || {};
      const nodeCount = nodes.get(key(o));
      return h("tr", { dataset: { cluster: key(o) } },
        h("td", {}, h("a", { href: `#/clusters/${o.metadata.namespace}/${o.metadata.name}` }, o.metadata.name)),
        h("td", { class: "hide-narrow" }, o.metadata.namespace),
        h("td", {}, (o.status && o.status.version) || o.spec.version || "-"),
        h("td", {}, statusBadge(o)),
        h("td", { class: "hide-narrow" }, (o.status && o.status.endpoint) || "-"),
        h("td", { class: "hide-narrow" }, nodeCount === undefined ? "-" : String(nodeCount)),
        h("td", {}, usageBar(ds.usedBytes || 0, ds.quotaBytes || 0)),
        h("td", {}, age(o.metadata.creationTimestamp)));
    });
    body.replaceChildren(...rows);
    msg.textContent = rows.length ? "" : "No tenant clusters here yet.";
  };
  // Node counts come from each Ready tenant's own API, once per tenant.
  const countNodes = (o) => {
    const k = key(o);
    const r = cond(o, "Ready");
    if (!r || r.status !== "True" || nodes.has(k)) return;
    nodes.set(k, undefined);
    api("GET", consolePath(o.metadata.namespace, o.metadata.name, "nodes"))
      .then((list) => { nodes.set(k, list.length); draw(); })
      .catch(() => { nodes.delete(k); });
  };
  const start = () => {
    cleanups.forEach((f) => f()); cleanups = [];
    items.clear();
    sessionStorage.setItem("namespace", nsInput.value.trim());
    stream({ resource: "tenantclusters", namespace: nsInput.value.trim() }, (type, data) => {
      if (type === "failure") { msg.textContent = data.message; msg.className = "error"; body.replaceChildren(); return; }
      msg.className = "";
      if (type === "list") { items.clear(); data.forEach((o) => items.set(key(o), o)); }
      else if (type === "DELETED") items.delete(key(data));
      else items.set(key(data), data);
      items.forEach(countNodes);
      draw();
    });
  };
  const tick = setInterval(draw, 15000);
  cleanups.push(() => clearInterval(tick));
  main.replaceChildren(h("h1", {}, "Tenant clusters"),
    h("form", { class: "toolbar", onsubmit: (e) => { e.preventDefault(); start(); } },
      h("label", { for: "namespace" }, "Namespace", nsInput), h("button", { type: "submit" }, "Show"),
      h("a", { href: "#/new" }, "Create a cluster")),
    msg, table);
  start();
}

// ---- create ----

// fieldErrors puts the API server's validation causes next to the form
// fields whose data-field is the cause's field path (or its nearest
// parent); causes for no field go to the form's own message.
function showFieldErrors(form, status, formError) {
  const causes = (status.details && status.details.causes) || [];
  const fields = [...form.querySelectorAll("[data-field]")];
  let placed = false;
  for (const c of causes) {
    const path = (c.field || "").replace(/\[\d+\]/g, "");
    const el = fields.filter((f) => path === f.dataset.field || path.startsWith(f.dataset.field + ".") || f.dataset.field.startsWith(path + ".") && path)
      .sort((a, b) => b.dataset.field.length - a.dataset.field.length)[0];
    if (!el) continue;
    const out = document.getElementById(el.id + "-error");
    out.textContent = (out.textContent ? out.textContent + " " : "") + c.message;
    el.setAttribute("aria-invalid", "true");
    placed = true;
  }
  formError.textContent = placed ? "The admin cluster refused the cluster: see the fields above." : status.message;
  const first = form.querySelector("[aria-invalid=true]");
  if (first) first.focus();
}

function field(id, label, fieldPath, input, hint) {
  input.id = id;
  input.name = id;
  input.dataset.field = fieldPath;
  input.setAttribute("aria-describedby", id + "-error");
  return h("label", { for: id }, label, hint ? h("span", { class: "hint" }, hint) : null, input,
    h("span", { class: "field-error", id: id + "-error", role: "alert" }));
}

async function renderCreate() {
  let versions = { default: "", supported: "" };
  try { versions = await api("GET", "/console/api/versions"); } catch (ex) { if (ex.status.code === 401) return; }
  const formError = h("p", { class: "form-error", id: "create-error", role: "alert" });
  const form = h("form", { class: "stack", id: "create", novalidate: true, onsubmit: async (e) => {
    e.preventDefault();
    form.querySelectorAll(".field-error").forEach((el) => { el.textContent = ""; });
    form.querySelectorAll("[aria-invalid]").forEach((el) => el.removeAttribute("aria-invalid"));
    formError.textContent = "";
    const v = (id) => form.elements[id].value.trim();
    const ns = v("ns") || "default";
    const spec = { version: v("version"), exposure: { type: v("exposure") }, datastore: { name: v("datastore") } };
    const replicas = v("replicas");
    if (replicas !== "") spec.controlPlane = { replicas: Number.isInteger(Number(replicas)) ? Number(replicas) : replicas };
    const obj = { apiVersion: "kubinception.dev/v1alpha1", kind: "TenantCluster", metadata: { name: v("name"), namespace: ns }, spec };
    const submit = form.querySelector("button[type=submit]");
    submit.disabled = true;
    try {
      const created = await api("POST", `${API}/namespaces/${encodeURIComponent(ns)}/tenantclusters`, obj);
      location.hash = `#/clusters/${created.metadata.namespace}/${created.metadata.name}`;
    } catch (ex) {
      if (ex.status.code !== 401) showFieldErrors(form, ex.status, formError);
    } finally { submit.disabled = false; }
  } },
  field("name", "Name", "metadata.name", h("input", { autocomplete: "off" }), "Lowercase letters, digits and '-'."),
  field("ns", "Namespace", "metadata.namespace", h("input", { value: defaultNamespace() || "default", autocomplete: "off" })),
  field("version", "Kubernetes version", "spec.version", h("input", { value: versions.default, list: "versions", autocomplete: "off" }), `Supported: ${versions.supported}.`),
  h("datalist", { id: "versions" }, versions.default ? h("option", { value: versions.default }) : null),
  field("replicas", "Control-plane replicas", "spec.controlPlane.replicas", h("input", { value: "1", inputmode: "numeric" })),
  field("exposure", "Exposure", "spec.exposure.type", h("select", {}, ...["NodePort", "LoadBalancer", "ClusterIP", "FrontDoor"].map((t) => h("option", { value: t }, t))),
    "How the tenant's API server is reached."),
  field("datastore", "Datastore", "spec.datastore.name", h("input", { value: "default", autocomplete: "off" })),
  h("div", { class: "actions" }, h("button", { class: "primary", type: "submit" }, "Create cluster")),
  formError);
  main.replaceChildren(h("h1", {}, "Create a tenant cluster"), form);
  form.elements.name.focus();
}

// ---- cluster page ----

function renderCluster(ns, name) {
  const title = h("h1", {}, `${name}`);
  const facts = h("dl", { class: "facts", id: "facts" });
  const conds = h("tbody");
  const events = h("tbody");
  const nodesBody = h("tbody");
  const nodesMsg = h("p", { id: "nodes-message" });
  const out = h("div", { id: "action-output", role: "status", "aria-live": "polite" });
  const eventItems = new Map();
  let current = null;
  let gone = false;

  const loadNodes = async () => {
    try {
      const list = await api("GET", consolePath(ns, name, "nodes"));
      nodesBody.replaceChildren(...list.map((n) => h("tr", {}, h("td", {}, n.name), h("td", {}, h("span", { class: "badge " + (n.ready ? "True" : "False") }, n.ready ? "Ready" : "NotReady")),
        h("td", {}, n.version), h("td", { class: "hide-narrow" }, n.internalIP || "-"), h("td", {}, age(n.created)))));
      nodesMsg.textContent = list.length ? "" : "No nodes yet: run the join command on a machine.";
    } catch (ex) { nodesMsg.textContent = ex.message; }
  };

  const draw = () => {
    const o = current;
    if (!o) return;
    const st = o.status || {};
    const ds = st.datastore || {};
    title.replaceChildren(`${o.metadata.name} `, statusBadge(o));
    facts.replaceChildren(
      h("dt", {}, "Namespace"), h("dd", {}, o.metadata.namespace),
      h("dt", {}, "Version"), h("dd", { id: "version" }, st.version && st.version !== o.spec.version ? `${st.version} → ${o.spec.version}` : o.spec.version || "-"),
      h("dt", {}, "Endpoint"), h("dd", { id: "endpoint" }, st.endpoint || "-"),
      h("dt", {}, "Exposure"), h("dd", {}, (o.spec.exposure && o.spec.exposure.type) || "-"),
      h("dt", {}, "Datastore"), h("dd", {}, h("a", { href: `#/datastores/${(o.spec.datastore && o.spec.datastore.name) || "default"}` }, (o.spec.datastore && o.spec.datastore.name) || "default")),
      h("dt", {}, "Datastore usage"), h("dd", {}, usageBar(ds.usedBytes || 0, ds.quotaBytes || 0), ds.keys ? ` (${ds.keys} keys)` : ""),
      h("dt", {}, "Encryption"), h("dd", {}, (st.encryption && st.encryption.keyName) ? `key ${st.encryption.keyName}, ${st.encryption.phase || "Idle"}` : "-"),
      h("dt", {}, "Created"), h("dd", {}, `${age(o.metadata.creationTimestamp)} ago`));
    conds.replaceChildren(...(st.conditions || []).map((c) => h("tr", {},
      h("td", {}, c.type), h("td", {}, h("span", { class: "badge " + c.status }, c.status)), h("td", {}, c.reason),
      h("td", { class: "msg" }, c.message), h("td", { class: "hide-narrow" }, age(c.lastTransitionTime)))));
  };
  const drawEvents = () => {
    const list = [...eventItems.values()].sort((a, b) => new Date(b.lastTimestamp || b.eventTime || b.metadata.creationTimestamp) - new Date(a.lastTimestamp || a.eventTime || a.metadata.creationTimestamp));
    events.replaceChildren(...list.map((e) => h("tr", {}, h("td", {}, age(e.lastTimestamp || e.eventTime || e.metadata.creationTimestamp)),
      h("td", {}, h("span", { class: e.type === "Warning" ? "bad" : "" }, e.type)), h("td", {}, e.reason),
      h("td", { class: "msg" }, e.message), h("td", { class: "hide-narrow" }, e.count || 1))));
  };

  stream({ resource: "tenantclusters", namespace: ns, name }, (type, data) => {
    if (type === "failure") { title.replaceChildren(name); out.replaceChildren(h("p", { class: "error", role: "alert" }, data.message)); return; }
    const obj = type === "list" ? data[0] : data;
    if (type === "DELETED" || (type === "list" && !obj)) {
      gone = true;
      current = null;
      title.replaceChildren(`${name} `, h("span", { class: "badge False", id: "gone" }, "Deleted"));
      return;
    }
    const wasReady = current && cond(current, "Ready") && cond(current, "Ready").status === "True";
    current = obj;
    draw();
    const ready = cond(obj, "Ready");
    if (ready && ready.status === "True" && !wasReady) loadNodes();
  });
  stream({ resource: "events", namespace: ns, name }, (type, data) => {
    if (type === "failure") return;
    if (type === "list") { eventItems.clear(); data.forEach((e) => eventItems.set(e.metadata.uid, e)); }
    else if (type === "DELETED") eventItems.delete(data.metadata.uid);
    else eventItems.set(data.metadata.uid, data);
    drawEvents();
  });

  const act = (label, fn, cls) => h("button", { type: "button", class: cls, onclick: async (e) => {
    const b = e.currentTarget;
    b.disabled = true;
    out.replaceChildren(h("p", {}, `${label}…`));
    try { await fn(); } catch (ex) { out.replaceChildren(h("p", { class: "error", role: "alert" }, ex.message)); } finally { b.disabled = false; }
  } }, label);

  const downloadKubeconfig = async () => {
    const res = await fetch(consolePath(ns, name, "kubeconfig"), { method: "POST", headers: { "X-CSRF-Token": session.csrfToken }, credentials: "same-origin" });
    if (!res.ok) {
      const st = await res.json().catch(() => ({ message: res.statusText }));
      throw new ApiError(st);
    }
    const blob = await res.blob();
    const url = URL.createObjectURL(blob);
    const a = h("a", { href: url, download: `${name}.kubeconfig` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    out.replaceChildren(h("p", { id: "kubeconfig-issued" }, `Downloaded ${name}.kubeconfig, valid until ${res.headers.get("X-Kubeconfig-Expires")}. Revoke kubeconfigs revokes it.`));
  };
  const joinCommand = async () => {
    const r = await api("POST", consolePath(ns, name, "join-command"));
    out.replaceChildren(h("p", {}, `Run on the machine to join (the token expires ${r.expires}):`), h("pre", { id: "join-command" }, r.command));
  };
  const revoke = async () => {
    const r = await api("POST", consolePath(ns, name, "revoke-kubeconfigs"));
    out.replaceChildren(h("p", {}, `Customer generation raised to ${r.generation}: every kubeconfig issued before is revoked once the operator has applied it.`));
  };
  const annotate = (annotation) => api("PATCH", clusterPath(ns, name), { metadata: { annotations: { [annotation]: new Date().toISOString() } } }, "application/merge-patch+json");
  const rotate = async () => {
    await annotate("kubinception.dev/encryption-key-rotation-requested");
    out.replaceChildren(h("p", {}, "Encryption key rotation requested: the Encryption line above and the events follow it."));
  };
  const rotateCerts = async () => {
    await annotate("kubinception.dev/certificate-rotation-requested");
    out.replaceChildren(h("p", {}, "Certificate rotation requested: every leaf certificate is reissued and the control plane rolls one pod at a time; the events follow it."));
  };
  const hibernate = async () => {
    if (!(current && current.spec.hibernation && current.spec.hibernation.enabled)) {
      out.replaceChildren(h("p", { class: "error", role: "alert" }, `${name} does not allow hibernation: set spec.hibernation.enabled to true first.`));
      return;
    }
    await annotate("kubinception.dev/hibernate-requested");
    out.replaceChildren(h("p", {}, "Hibernation requested: the control plane scales to zero; its state stays in the datastore and the first request through the front door wakes it."));
  };
  const wake = async () => {
    await annotate("kubinception.dev/wake-requested");
    out.replaceChildren(h("p", {}, "Wake requested: the control plane starts again."));
  };
  const backUp = async () => {
    const stamp = new Date().toISOString().replace(/[-:]/g, "").replace("T", "-").slice(0, 15);
    const b = await api("POST", `/kube/apis/kubinception.dev/v1alpha1/namespaces/${ns}/tenantbackups`,
      { apiVersion: "kubinception.dev/v1alpha1", kind: "TenantBackup", metadata: { name: `${name}-${stamp}` }, spec: { cluster: name } });
    out.replaceChildren(h("p", { id: "backup-requested" }, `Backup ${b.metadata.name} requested: the operator copies the tenant's state at one revision, encrypted, to the backup target (kubinception backup list ${name} lists it).`));
  };

  const upgradeInput = h("input", { id: "upgrade-version", name: "upgrade-version", "aria-describedby": "upgrade-version-error", size: 10, placeholder: "v1.35.4", autocomplete: "off" });
  const upgradeErr = h("span", { class: "field-error", id: "upgrade-version-error", role: "alert" });
  const upgrade = h("form", { class: "actions", onsubmit: async (e) => {
    e.preventDefault();
    upgradeErr.textContent = "";
    try {
      await api("PATCH", clusterPath(ns, name), { spec: { version: upgradeInput.value.trim() } }, "application/merge-patch+json");
      out.replaceChildren(h("p", {}, `Upgrade to ${upgradeInput.value.trim()} requested: the operator rolls the control plane.`));
    } catch (ex) { if (ex.status.code !== 401) upgradeErr.textContent = ex.message; }
  } }, h("label", { for: "upgrade-version" }, "Upgrade to", upgradeInput), h("button", { type: "submit" }, "Upgrade"), upgradeErr);

  const confirmInput = h("input", { id: "confirm-name", name: "confirm-name", autocomplete: "off" });
  const dialog = h("dialog", { id: "delete-dialog", "aria-labelledby": "delete-title" },
    h("form", { method: "dialog", class: "stack", onsubmit: async (e) => {
      if (e.submitter && e.submitter.value === "cancel") return;
      e.preventDefault();
      if (confirmInput.value !== name) { confirmInput.setAttribute("aria-invalid", "true"); return; }
      try {
        await api("DELETE", clusterPath(ns, name));
        dialog.close();
        out.replaceChildren(h("p", {}, `${name} is being deleted: its control plane, every key of its state, its etcd user and role go.`));
      } catch (ex) { dialog.close(); out.replaceChildren(h("p", { class: "error", role: "alert" }, ex.message)); }
    } },
    h("h2", { id: "delete-title" }, `Delete ${name}?`),
    h("p", {}, "Its control plane and all of its state are deleted; this cannot be undone."),
    h("label", { for: "confirm-name" }, `Type ${name} to confirm`, confirmInput),
    h("div", { class: "actions" }, h("button", { class: "danger", type: "submit", value: "delete", id: "confirm-delete" }, "Delete"),
      h("button", { type: "submit", value: "cancel", formnovalidate: true }, "Cancel"))));

  main.replaceChildren(title, facts,
    h("div", { class: "cards" },
      h("section", { class: "card", "aria-labelledby": "access-h" }, h("h2", { id: "access-h" }, "Access"),
        h("div", { class: "actions" }, act("Download kubeconfig", downloadKubeconfig, "primary"), act("Join command", joinCommand), act("Revoke kubeconfigs", revoke))),
      h("section", { class: "card", "aria-labelledby": "life-h" }, h("h2", { id: "life-h" }, "Lifecycle"),
        upgrade,
        h("div", { class: "actions" }, act("Rotate encryption key", rotate), act("Rotate certificates", rotateCerts),
          act("Hibernate", hibernate), act("Wake", wake), act("Back up", backUp),
          h("button", { type: "button", class: "danger", id: "delete", onclick: () => { confirmInput.value = ""; dialog.showModal(); confirmInput.focus(); } }, "Delete…")))),
    out,
    h("h2", {}, "Conditions"),
    h("div", { class: "table-wrap" }, h("table", { id: "conditions" }, h("thead", {}, h("tr", {}, ...["Type", "Status", "Reason", "Message", "Since"].map((t, i) => h("th", { scope: "col", class: i === 4 ? "hide-narrow" : null }, t)))), conds)),
    h("h2", {}, "Events"),
    h("div", { class: "table-wrap" }, h("table", { id: "events" }, h("thead", {}, h("tr", {}, ...["Age", "Type", "Reason", "Message", "Count"].map((t, i) => h("th", { scope: "col", class: i === 4 ? "hide-narrow" : null }, t)))), events)),
    h("h2", {}, "Nodes"),
    h("div", { class: "actions" }, h("button", { type: "button", onclick: loadNodes }, "Refresh nodes")),
    nodesMsg,
    h("div", { class: "table-wrap" }, h("table", { id: "nodes" }, h("thead", {}, h("tr", {}, ...["Name", "Status", "Version", "Address", "Age"].map((t, i) => h("th", { scope: "col", class: i === 3 ? "hide-narrow" : null }, t)))), nodesBody)),
    dialog);
  void gone;
}

// ---- datastores ----

function renderDatastores(only) {
  const body = h("div", { id: "datastores" });
  const msg = h("p", { role: "status" });
  const items = new Map();
  const tenants = new Map();
  const draw = () => {
    const list = [...items.values()].filter((d) => !only || d.metadata.name === only).sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
    body.replaceChildren(...list.map((d) => {
      const st = d.status || {};
      const ready = cond(d, "Ready");
      const mine = [...tenants.values()].filter((t) => ((t.spec.datastore && t.spec.datastore.name) || "default") === d.metadata.name);
      const quota = d.spec.defaultQuotaBytes;
      return h("section", { class: "card", dataset: { datastore: d.metadata.name } },
        h("h2", {}, h("a", { href: `#/datastores/${d.metadata.name}` }, d.metadata.name), " ",
          h("span", { class: "badge " + (ready ? ready.status : "Unknown") }, ready ? (ready.status === "True" ? "Healthy" : ready.reason || "Unhealthy") : "Unknown")),
        h("dl", { class: "facts" },
          h("dt", {}, "Members"), h("dd", { id: "members" }, `${st.healthyMembers || 0} of ${st.members || 0} healthy`),
          h("dt", {}, "Endpoints"), h("dd", {}, (d.spec.endpoints || []).join(", ")),
          h("dt", {}, "Tenants"), h("dd", {}, String(st.tenants || 0)),
          h("dt", {}, "Usage"), h("dd", {}, bytes(st.usedBytes || 0), quota ? ` (default tenant quota ${quota})` : ""),
          h("dt", {}, "Gateway"), h("dd", {}, st.gateway && st.gateway.endpoint ? `${st.gateway.endpoint}, ${st.gateway.readyReplicas || 0} ready` : "-")),
        (d.status && d.status.conditions || []).length ? h("div", { class: "table-wrap" }, h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Condition"), h("th", {}, "Status"), h("th", {}, "Reason"), h("th", {}, "Message"))),
          h("tbody", {}, ...d.status.conditions.map((c) => h("tr", {}, h("td", {}, c.type), h("td", {}, h("span", { class: "badge " + c.status }, c.status)), h("td", {}, c.reason), h("td", { class: "msg" }, c.message)))))) : null,
        only ? h("div", {}, h("h2", {}, "Tenants you can see"),
          mine.length ? h("div", { class: "table-wrap" }, h("table", { id: "datastore-tenants" }, h("thead", {}, h("tr", {}, h("th", {}, "Tenant"), h("th", {}, "Usage"), h("th", {}, "Keys"))),
            h("tbody", {}, ...mine.map((t) => h("tr", {}, h("td", {}, h("a", { href: `#/clusters/${t.metadata.namespace}/${t.metadata.name}` }, `${t.metadata.namespace}/${t.metadata.name}`)),
              h("td", {}, usageBar((t.status && t.status.datastore && t.status.datastore.usedBytes) || 0, (t.status && t.status.datastore && t.status.datastore.quotaBytes) || 0)),
              h("td", {}, String((t.status && t.status.datastore && t.status.datastore.keys) || 0))))))) : h("p", {}, "None that you may list.")) : null);
    }));
    msg.textContent = list.length ? "" : only ? `No datastore ${only}.` : "No datastores.";
  };
  stream({ resource: "datastores" }, (type, data) => {
    if (type === "failure") { msg.textContent = `Datastores: ${data.message}`; msg.className = "error"; return; }
    if (type === "list") { items.clear(); data.forEach((d) => items.set(d.metadata.name, d)); }
    else if (type === "DELETED") items.delete(data.metadata.name);
    else items.set(data.metadata.name, data);
    draw();
  });
  if (only) {
    stream({ resource: "tenantclusters", namespace: defaultNamespace() }, (type, data) => {
      if (type === "failure") return;
      const k = (o) => o.metadata.namespace + "/" + o.metadata.name;
      if (type === "list") { tenants.clear(); data.forEach((o) => tenants.set(k(o), o)); }
      else if (type === "DELETED") tenants.delete(k(data));
      else tenants.set(k(data), data);
      draw();
    });
  }
  main.replaceChildren(h("h1", {}, only ? `Datastore ${only}` : "Datastores"), msg, h("div", { class: "cards" }, body));
}

// ---- routing ----

async function route() {
  cleanups.forEach((f) => f());
  cleanups = [];
  if (!session) {
    try { session = await api("GET", "/console/api/session"); } catch { session = null; }
  }
  if (!session) { renderSignIn(); return; }
  renderWho();
  const parts = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  if (parts[0] === "new") await renderCreate();
  else if (parts[0] === "clusters" && parts.length === 3) renderCluster(parts[1], parts[2]);
  else if (parts[0] === "datastores") renderDatastores(parts[1]);
  else renderList();
  document.querySelectorAll("header nav a").forEach((a) => {
    if (a.getAttribute("href") === "#/" + (parts[0] || "")) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  });
  if (document.activeElement === document.body) main.focus();
}

window.addEventListener("hashchange", route);
route();
