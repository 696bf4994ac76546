// tandem field-service page: vanilla JS, no dependencies (docs/api.md).
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  let csrf = "";
  let events = null;

  function show(id, on) { $(id).hidden = !on; }
  function say(text, ok) {
    const m = $("message");
    m.textContent = text;
    m.classList.toggle("ok", !!ok);
    m.hidden = !text;
  }

  async function call(method, path, body, type) {
    const headers = {};
    if (method !== "GET") headers["X-CSRF-Token"] = csrf;
    if (type) headers["Content-Type"] = type;
    const resp = await fetch(path, { method, headers, body, credentials: "same-origin" });
    let doc = {};
    try { doc = await resp.json(); } catch (e) { doc = { error: resp.status + " " + resp.statusText }; }
    if (!resp.ok) {
      const err = new Error(doc.error || resp.statusText);
      err.status = resp.status; err.kind = doc.kind;
      throw err;
    }
    return doc;
  }

  async function start() {
    try {
      const s = await call("GET", "/session");
      csrf = s.csrf;
      loggedIn();
    } catch (e) {
      if (e.kind === "no-password") { show("nopassword", true); return; }
      show("login", true);
      $("password").focus();
    }
  }

  function loggedIn() {
    show("login", false); show("device", true); show("logout", true);
    refresh();
    events = new EventSource("/api/v1/events");
    events.addEventListener("progress", (m) => progress(JSON.parse(m.data)));
    events.addEventListener("done", (m) => { progress(JSON.parse(m.data)); refresh(); });
    events.addEventListener("error", (m) => { if (m.data) { refresh(); } });
  }

  function progress(e) {
    const pct = e.total > 0 ? Math.floor((100 * e.bytes) / e.total) : 0;
    $("progress").value = pct;
    $("percent").textContent = pct + " %";
  }

  function role(g, b) {
    const r = [];
    if (g === b.activeGroup) r.push("running");
    if (g === b.defaultGroup) r.push("default");
    if ((b.spareGroups || []).includes(g)) r.push("spare");
    if (b.trial && b.trial.group === g) r.push("trial next boot");
    return r.join(", ") || "—";
  }

  async function refresh() {
    try {
      const info = await call("GET", "/api/v1/info");
      const b = info.boot;
      const ver = (g) => (b.groups[g] && b.groups[g].version) || "unknown";
      $("running").textContent = b.activeGroup + " (" + ver(b.activeGroup) + ")";
      $("default").textContent = b.defaultGroup + " (" + ver(b.defaultGroup) + ")";
      $("trial").textContent = b.commitPending ? "running on trial: commit or roll back"
        : b.trial ? "group " + b.trial.group + " boots on trial at the next reboot" : "none";
      $("state").textContent = info.state ? info.state.status + (info.state.error ? ": " + info.state.error : "") : "not managed";
      const lu = info.lastUpdate;
      $("last").textContent = lu ? lu.status + (lu.message ? ": " + lu.message : "") : "none";
      const body = $("groups").querySelector("tbody");
      body.textContent = "";
      for (const g of Object.keys(b.groups).sort()) {
        const tr = document.createElement("tr");
        const inc = b.groups[g].incomplete ? " (incomplete)" : "";
        for (const v of [g, ver(g) + inc, role(g, b)]) {
          const td = document.createElement("td");
          td.textContent = v;
          tr.appendChild(td);
        }
        body.appendChild(tr);
      }
      $("reboot-spare").disabled = b.commitPending || (b.spareGroups || []).length === 0;
      $("commit").disabled = !b.commitPending;
      $("rollback").disabled = !b.commitPending;
    } catch (e) { failed(e); }
  }

  function failed(e) {
    if (e.status === 401) { say("Your session ended; log in again."); show("device", false); show("login", true); return; }
    say(e.message);
  }

  $("login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const s = await call("POST", "/login", JSON.stringify({ password: $("password").value }), "application/json");
      csrf = s.csrf;
      $("password").value = "";
      say("");
      loggedIn();
    } catch (e) { say(e.message); $("password").select(); }
  });

  $("logout").addEventListener("click", async () => {
    try { await call("POST", "/logout"); } catch (e) { /* the session is gone either way */ }
    location.reload();
  });

  $("install-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const file = $("bundle").files[0];
    if (!file) return;
    say("");
    progress({ bytes: 0, total: 1 });
    $("install").disabled = true; show("cancel", true);
    $("install-status").textContent = "Installing " + file.name + " (verified as it streams)…";
    try {
      // The progress bar is the event stream's alone (it shows a CLI's install too).
      const done = await call("POST", "/api/v1/install", file, "application/octet-stream");
      $("install-status").textContent = "Installed version " + done.version + " into group " + done.group + ".";
      say("Installed " + done.version + ". Reboot into it to try it.", true);
    } catch (e) {
      $("install-status").textContent = "Install failed.";
      say("Install failed: " + e.message);
    } finally {
      $("install").disabled = false; show("cancel", false);
      refresh();
    }
  });

  $("cancel").addEventListener("click", () => call("POST", "/api/v1/cancel").catch(failed));

  function action(id, path, body, text) {
    $(id).addEventListener("click", async () => {
      say("");
      try {
        const r = await call("POST", path, JSON.stringify(body), "application/json");
        say(text(r), true);
      } catch (e) { failed(e); }
      refresh();
    });
  }
  action("reboot-spare", "/api/v1/reboot", { spare: true }, (r) => "Rebooting into group " + r.trial + " on trial.");
  action("reboot", "/api/v1/reboot", {}, () => "Rebooting.");
  action("commit", "/api/v1/commit", {}, (r) => r.changed ? "Committed: group " + r.default + " is now the default." : "Nothing to commit.");
  action("rollback", "/api/v1/mark-bad", { reason: "rolled back from the field-service page" }, () => "The trial is given up; reboot to return to the default group.");

  $("reset").addEventListener("click", () => $("reset-dialog").showModal());
  $("reset-dialog").addEventListener("close", async () => {
    if ($("reset-dialog").returnValue !== "reset") return;
    try {
      await call("POST", "/api/v1/state-reset", JSON.stringify({ reboot: true }), "application/json");
      say("The state is reset at the next boot; the device reboots.", true);
    } catch (e) { failed(e); }
  });

  start();
})();
