/* Dockyard UI: one page, hash routes, live data over SSE and a WebSocket. */
"use strict";
(function () {
const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const main = document.getElementById("main");
let cleanups = [];            // closed when the page changes (streams, timers, charts)
let gen = 0;                  // the route's number: a page's late answers check they still own main
const owner = () => { const my = gen; return () => my === gen; };
const onLeave = (f) => cleanups.push(f);

// ---- helpers ---------------------------------------------------------------------
const esc = (s) => String(s == null ? "" : s).replace(/[&<>"']/g,
  (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
const short = (id) => String(id || "").replace(/^sha256:/, "").slice(0, 12);
function bytes(n) {
  if (n == null || n < 0) return "–";
  const u = ["B", "KB", "MB", "GB", "TB"]; let i = 0;
  while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
  return (i ? n.toFixed(n < 10 ? 2 : n < 100 ? 1 : 0) : n) + " " + u[i];
}
function ago(ts) {
  const s = Math.max(0, Date.now() / 1000 - ts);
  if (s < 60) return Math.floor(s) + " s ago";
  if (s < 3600) return Math.floor(s / 60) + " min ago";
  if (s < 86400) return Math.floor(s / 3600) + " h ago";
  return Math.floor(s / 86400) + " days ago";
}
function api(method, path, body) {
  const opt = {method, headers: {"X-CSRF-Token": CSRF}, credentials: "same-origin"};
  if (body !== undefined) { opt.body = JSON.stringify(body); opt.headers["Content-Type"] = "application/json"; }
  return fetch(path, opt).then(async (r) => {
    const text = await r.text();
    let data = null; try { data = text ? JSON.parse(text) : null; } catch (e) { data = {message: text}; }
    if (!r.ok) throw new Error((data && data.message) || r.statusText);
    return data;
  });
}
function stream(path, onData, events) {      // EventSource with the CSRF token
  const sep = path.includes("?") ? "&" : "?";
  const es = new EventSource(path + sep + "csrf=" + encodeURIComponent(CSRF));
  es.onmessage = (e) => onData(JSON.parse(e.data));
  for (const [name, f] of Object.entries(events || {})) es.addEventListener(name, (e) => f(JSON.parse(e.data || "{}")));
  onLeave(() => es.close());
  return es;
}
function toast(msg, bad) {
  const t = document.getElementById("toast");
  t.textContent = msg; t.className = "toast" + (bad ? " bad" : "");
  clearTimeout(toast.timer); toast.timer = setTimeout(() => t.className = "toast hidden", bad ? 6000 : 2500);
}
function confirmDialog(text, okLabel) {
  return new Promise((resolve) => {
    const m = document.getElementById("modal");
    document.getElementById("modal-text").textContent = text;
    const ok = document.getElementById("modal-ok"), cancel = document.getElementById("modal-cancel");
    ok.textContent = okLabel || "OK";
    m.classList.remove("hidden");
    const done = (v) => { m.classList.add("hidden"); ok.onclick = cancel.onclick = null; resolve(v); };
    ok.onclick = () => done(true); cancel.onclick = () => done(false);
    m.onkeydown = (e) => { if (e.key === "Escape") done(false); };
    ok.focus();
  });
}
// A dialog with fields: submit(values) runs on OK (or Enter); what it throws is shown in the
// dialog, which stays open; Cancel or Escape closes it. Resolves true once submit succeeded.
let closeDialog = null;
function formDialog(title, fields, okLabel, submit) {
  if (closeDialog) closeDialog(false);
  return new Promise((resolve) => {
    const m = document.getElementById("dialog");
    m.innerHTML = '<form class="modal-card form-card" id="dialog-form" novalidate><h2>' + esc(title) + "</h2>" +
      fields.map((f) => '<label class="field">' + esc(f.label) + '<input name="' + esc(f.name) + '" id="dialog-' + esc(f.name) +
        '" autocomplete="off" spellcheck="false" value="' + esc(f.value || "") + '" placeholder="' + esc(f.placeholder || "") + '">' +
        (f.hint ? '<span class="hint">' + esc(f.hint) + "</span>" : "") + "</label>").join("") +
      '<p class="error" id="dialog-error" role="alert"></p><div class="modal-buttons">' +
      '<button type="button" class="btn" id="dialog-cancel">Cancel</button>' +
      '<button type="submit" class="btn primary" id="dialog-ok">' + esc(okLabel) + "</button></div></form>";
    const form = document.getElementById("dialog-form"), err = document.getElementById("dialog-error"),
      ok = document.getElementById("dialog-ok");
    const done = (v) => { closeDialog = null; m.classList.add("hidden"); m.innerHTML = ""; resolve(v); };
    closeDialog = done;
    document.getElementById("dialog-cancel").onclick = () => done(false);
    m.onkeydown = (e) => { if (e.key === "Escape") done(false); };
    form.onsubmit = async (e) => {
      e.preventDefault();
      const values = {}; for (const f of fields) values[f.name] = form.elements[f.name].value.trim();
      err.textContent = ""; ok.disabled = true;
      try { await submit(values); done(true); }
      catch (x) { if (closeDialog === done) { err.textContent = x.message; ok.disabled = false; } }
    };
    m.classList.remove("hidden");
    const first = form.querySelector("input"); if (first) { first.focus(); first.select(); }
  });
}
const TAG_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const REPO_RE = /^(?:[A-Za-z0-9.-]+(?::[0-9]+)?\/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/;
function splitRef(ref) {              // "host:5000/a/b:tag" -> ["host:5000/a/b", "tag"]
  const slash = ref.lastIndexOf("/"), colon = ref.lastIndexOf(":");
  return colon > slash ? [ref.slice(0, colon), ref.slice(colon + 1)] : [ref, ""];
}
async function act(label, f, after) {
  try { await f(); toast(label + ": done"); if (after) after(); }
  catch (e) { toast(label + ": " + e.message, true); }
}
function debounce(f, ms) { let t; return () => { clearTimeout(t); t = setTimeout(f, ms); }; }
function sparkSVG(vals, max) {
  if (!vals || vals.length < 2) return '<svg class="spark" viewBox="0 0 100 24"></svg>';
  const m = Math.max(max || 0, ...vals, 1e-9), n = vals.length;
  const pts = vals.map((v, i) => (i * 100 / (n - 1)).toFixed(1) + "," + (23 - v / m * 22).toFixed(1)).join(" ");
  return '<svg class="spark" viewBox="0 0 100 24" preserveAspectRatio="none"><polyline points="' + pts + '"/></svg>';
}
const stateBadge = (state, health) =>
  '<span class="badge s-' + esc(state) + '">' + esc(state) + '</span>' +
  (health ? ' <span class="badge h-' + esc(health) + '">' + esc(health) + '</span>' : "");

// ---- containers ------------------------------------------------------------------
const SPARK_MAX = 100;        // live sparklines for this many running containers at most
const OVERSCAN = 20;          // rows rendered above and below the visible ones
// The list is virtual: only the rows on screen (and OVERSCAN around them) are in the DOM,
// between two spacer rows of the right height, so 10 or 10,000 containers cost the same to
// show. Rows have one fixed height (CSS), measured once.
async function pageContainers() {
  main.innerHTML = '<div class="bar"><h1>Containers</h1><input id="filter" class="search" placeholder="Filter by name or image">' +
    '<label class="check"><input type="checkbox" id="show-all" checked> show stopped</label>' +
    '<span id="count" class="muted"></span><span id="stats-note" class="muted small hidden"></span></div>' +
    '<table id="containers-table" class="grid fixed virtual"><colgroup><col style="width:14%"><col style="width:10%"><col style="width:8%">' +
    '<col style="width:8%"><col style="width:12%"><col style="width:12%"><col style="width:11%"><col style="width:25%"></colgroup><thead><tr><th>Name</th><th>Image</th><th>State</th><th>Ports</th>' +
    '<th>Status</th><th>CPU</th><th>Memory</th><th class="actions">Actions</th></tr></thead><tbody></tbody></table>';
  const table = document.getElementById("containers-table"), tbody = table.querySelector("tbody");
  const hist = {}, last = {};   // id -> [cpu...], id -> the latest stats
  let rows = [], shown = [], statsES = null, watched = "", from = 0, to = 0, rowH = 0, frame = 0;
  const live = owner();
  const filter = document.getElementById("filter"), showAll = document.getElementById("show-all");

  const b = (a, label, cls) => '<button class="btn small ' + (cls || "") + '" data-action="' + a + '">' + label + "</button>";
  const memText = (s) => s ? bytes(s.mem) + (s.mem_limit ? " / " + bytes(s.mem_limit) : "") : "";
  function rowHTML(c) {
    const running = c.state === "running", paused = c.state === "paused", s = last[c.id];
    const ports = c.ports.filter((p) => p.public).map((p) => {
      const host = (!p.ip || p.ip === "0.0.0.0" || p.ip === "::") ? location.hostname : p.ip;
      return '<a href="http://' + esc(host) + ":" + esc(p.public) + '/" target="_blank" rel="noopener">' +
        esc(p.public) + "→" + esc(p.private) + "/" + esc(p.type) + "</a>";
    }).join(" ");
    return '<tr data-id="' + esc(c.id) + '" data-name="' + esc(c.name) + '" data-state="' + esc(c.state) + '">' +
      '<td><a class="c-name" href="#/container/' + esc(c.id) + '">' + esc(c.name) + '</a><div class="muted mono">' + short(c.id) + "</div></td>" +
      '<td class="mono">' + esc(c.image) + "</td><td class=\"c-state\">" + stateBadge(c.state, c.health) + "</td>" +
      "<td>" + ports + '</td><td class="muted">' + esc(c.status) + "</td>" +
      '<td class="cpu">' + (running ? sparkSVG(hist[c.id]) + '<span class="v">' + (s ? s.cpu.toFixed(1) + " %" : "") + "</span>" : "") + "</td>" +
      '<td class="mem">' + (running ? '<span class="v">' + memText(s) + "</span>" : "") + "</td>" +
      '<td class="actions">' + (running ? b("stop", "Stop") + b("restart", "Restart") + b("pause", "Pause") + b("kill", "Kill", "warn")
        : paused ? b("unpause", "Resume") + b("kill", "Kill", "warn")
        : b("start", "Start", "primary")) + b("remove", "Remove", "danger") + "</td></tr>";
  }
  const spacer = (px, cls) => px > 0 ? '<tr class="spacer ' + cls + '" aria-hidden="true"><td colspan="8" style="height:' + px + 'px"></td></tr>' : "";
  // the rows [from, to) of `shown` in the DOM; again only when the visible ones leave them
  function paint(force) {
    if (!shown.length) { tbody.innerHTML = '<tr><td colspan="8" class="empty">No containers</td></tr>'; from = to = 0; return; }
    const h = rowH || 50, top = -tbody.getBoundingClientRect().top;
    const vFrom = Math.max(0, Math.floor(top / h)), vTo = Math.min(shown.length, Math.ceil((top + innerHeight) / h) + 1);
    if (!force && vFrom >= from && vTo <= to) return;
    from = Math.max(0, vFrom - OVERSCAN); to = Math.min(shown.length, Math.max(vTo, vFrom + 1) + OVERSCAN);
    let html = spacer(from * h, "top");
    for (let i = from; i < to; i++) html += rowHTML(shown[i]);
    tbody.innerHTML = html + spacer((shown.length - to) * h, "bottom");
    if (!rowH) {               // the real height, once
      const tr = tbody.querySelector("tr[data-id]");
      if (tr && tr.offsetHeight) { rowH = tr.offsetHeight; if (rowH !== h) paint(true); }
    }
  }
  const onScroll = () => { if (!frame) frame = requestAnimationFrame(() => { frame = 0; if (live()) paint(false); }); };
  window.addEventListener("scroll", onScroll, {passive: true});
  window.addEventListener("resize", onScroll);
  onLeave(() => { window.removeEventListener("scroll", onScroll); window.removeEventListener("resize", onScroll); });

  function render() {
    const f = filter.value.toLowerCase(), all = showAll.checked;
    shown = rows.filter((c) => (all || c.state === "running") &&
      (!f || c.name.toLowerCase().includes(f) || c.image.toLowerCase().includes(f)));
    table.dataset.rows = String(shown.length);
    paint(true);
    document.getElementById("count").textContent = shown.length + " of " + rows.length;
    const running = shown.filter((c) => c.state === "running");
    const note = document.getElementById("stats-note");
    note.classList.toggle("hidden", running.length <= SPARK_MAX);
    note.textContent = "· live CPU and memory for the first " + SPARK_MAX + " of " + running.length + " running containers (filter to pick others)";
    const ids = running.slice(0, SPARK_MAX).map((c) => c.id).join(",");
    if (ids !== watched) {
      watched = ids;
      if (statsES) statsES.close();
      statsES = ids ? stream("/api/stats?ids=" + ids, onStats) : null;
    }
  }
  function onStats(batch) {
    for (const [id, s] of Object.entries(batch)) {
      last[id] = s;
      const h = hist[id] = (hist[id] || []); h.push(s.cpu); if (h.length > 30) h.shift();
      const tr = tbody.querySelector('tr[data-id="' + CSS.escape(id) + '"]'); if (!tr) continue;
      const cpu = tr.querySelector(".cpu"), mem = tr.querySelector(".mem");
      if (cpu) { cpu.innerHTML = sparkSVG(h) + '<span class="v">' + s.cpu.toFixed(1) + " %</span>"; }
      if (mem && mem.querySelector(".v")) mem.querySelector(".v").textContent = memText(s);
    }
  }
  async function load() {
    const t0 = performance.now();
    try { rows = (await api("GET", "/api/containers")).containers; if (!live()) return; }
    catch (e) { if (!live()) return; tbody.innerHTML = '<tr><td colspan="8" class="error">' + esc(e.message) + "</td></tr>"; return; }
    render();
    main.dataset.loadedMs = String(Math.round(performance.now() - t0));
    main.dataset.loaded = String(Number(main.dataset.loaded || 0) + 1);
    // painted: the frame after the next one has been drawn with these rows
    requestAnimationFrame(() => setTimeout(() => { if (live()) main.dataset.paintedAt = String(performance.now()); }, 0));
  }
  filter.oninput = render; showAll.onchange = render;
  tbody.onclick = async (ev) => {
    const btn = ev.target.closest("button[data-action]"); if (!btn) return;
    const tr = btn.closest("tr"), id = tr.dataset.id, name = tr.dataset.name, a = btn.dataset.action;
    await containerAction(a, id, name, load);
  };
  const reload = debounce(load, 250);
  stream("/api/events", (ev) => { if (ev.Type === "container") reload(); });
  await load();
}
async function containerAction(a, id, name, after) {
  if (a === "remove") {
    if (!await confirmDialog("Remove container " + name + "? Its filesystem changes are lost.", "Remove")) return;
    return act("remove " + name, () => api("DELETE", "/api/containers/" + encodeURIComponent(id) + "?force=1"), after);
  }
  if ((a === "stop" || a === "kill" || a === "restart") &&
      !await confirmDialog(a[0].toUpperCase() + a.slice(1) + " container " + name + "?", a[0].toUpperCase() + a.slice(1))) return;
  return act(a + " " + name, () => api("POST", "/api/containers/" + encodeURIComponent(id) + "/" + a), after);
}

// ---- one container ---------------------------------------------------------------
function kv(obj) {
  return '<dl class="kv">' + Object.entries(obj).map(([k, v]) => "<dt>" + esc(k) + "</dt><dd>" + v + "</dd>").join("") + "</dl>";
}
async function pageContainer(id) {
  let c;
  const live = owner();
  try { c = await api("GET", "/api/containers/" + encodeURIComponent(id)); if (!live()) return; }
  catch (e) { if (!live()) return; main.innerHTML = '<p class="error">' + esc(e.message) + "</p>"; return; }
  const name = (c.Name || "").replace(/^\//, ""), st = c.State || {}, cfg = c.Config || {}, hc = c.HostConfig || {};
  const running = st.Status === "running";
  const b = (a, label, cls) => '<button class="btn ' + (cls || "") + '" data-action="' + a + '">' + label + "</button>";
  main.innerHTML = '<div class="bar"><h1><a href="#/containers">Containers</a> / <span id="c-title">' + esc(name) + "</span></h1>" +
    stateBadge(st.Status, (st.Health || {}).Status) + '<span class="grow"></span><span id="c-actions">' +
    (running ? b("stop", "Stop") + b("restart", "Restart") + b("pause", "Pause") + b("kill", "Kill", "warn")
      : st.Status === "paused" ? b("unpause", "Resume") : b("start", "Start", "primary")) + b("remove", "Remove", "danger") + "</span></div>" +
    '<div class="tabs">' + ["overview", "logs", "stats", "processes", "changes", "terminal"].map((t) =>
      '<button class="tab" id="tab-' + t + '" data-tab="' + t + '">' + t[0].toUpperCase() + t.slice(1) + "</button>").join("") + "</div>" +
    '<section id="panel"></section>';
  document.getElementById("c-actions").onclick = async (ev) => {
    const btn = ev.target.closest("button[data-action]"); if (!btn) return;
    const a = btn.dataset.action;
    await containerAction(a, c.Id, name, () => {
      const h = a === "remove" ? "#/containers" : "#/container/" + c.Id + "/" + current;
      if (location.hash === h) route(); else location.hash = h;
    });
  };
  let current = "overview";
  let tabCleanups = [];
  const panel = document.getElementById("panel");
  function show(tab) {
    tabCleanups.forEach((f) => { try { f(); } catch (e) {} }); tabCleanups = [];
    current = tab;
    for (const el of main.querySelectorAll(".tab")) el.classList.toggle("active", el.dataset.tab === tab);
    history.replaceState(null, "", "#/container/" + c.Id + "/" + tab);
    const saved = cleanups; cleanups = [];
    ({overview, logs, stats, processes, changes, terminal}[tab])();
    tabCleanups = cleanups; cleanups = saved;
  }
  onLeave(() => tabCleanups.forEach((f) => { try { f(); } catch (e) {} }));
  main.querySelector(".tabs").onclick = (ev) => { const t = ev.target.closest(".tab"); if (t) show(t.dataset.tab); };

  function overview() {
    const ports = Object.entries((c.NetworkSettings || {}).Ports || {}).map(([p, bs]) =>
      esc(p) + (bs ? " → " + bs.map((x) => esc((x.HostIp || "0.0.0.0") + ":" + x.HostPort)).join(", ") : "")).join("<br>") || "–";
    const nets = Object.entries((c.NetworkSettings || {}).Networks || {}).map(([n, v]) =>
      esc(n) + (v.IPAddress ? " (" + esc(v.IPAddress) + ")" : "")).join("<br>") || "–";
    const mounts = (c.Mounts || []).map((m) => esc(m.Source || m.Name) + " → " + esc(m.Destination) + (m.RW ? "" : " (ro)")).join("<br>") || "–";
    panel.innerHTML = '<div class="cards">' +
      '<div class="card"><h2>State</h2>' + kv({"Status": stateBadge(st.Status), "Started": esc(st.StartedAt || "–"),
        "Finished": esc(st.FinishedAt && !st.FinishedAt.startsWith("0001") ? st.FinishedAt : "–"), "Exit code": esc(st.ExitCode),
        "PID": esc(st.Pid || "–"), "Health": esc((st.Health || {}).Status || "–"), "Restart count": esc(c.RestartCount || 0)}) + "</div>" +
      '<div class="card"><h2>Configuration</h2>' + kv({"ID": '<span class="mono">' + esc(c.Id) + "</span>", "Image": '<span class="mono">' + esc(cfg.Image) + "</span>",
        "Command": '<span class="mono">' + esc([].concat(c.Path || [], c.Args || []).join(" ")) + "</span>",
        "Working dir": esc(cfg.WorkingDir || "/"), "User": esc(cfg.User || "root"), "TTY": esc(cfg.Tty ? "yes" : "no"),
        "Restart policy": esc((hc.RestartPolicy || {}).Name || "no"), "Created": esc(c.Created)}) + "</div>" +
      '<div class="card"><h2>Network</h2>' + kv({"Mode": esc(hc.NetworkMode), "Networks": nets, "Ports": ports, "Hostname": esc(cfg.Hostname)}) + "</div>" +
      '<div class="card"><h2>Storage</h2>' + kv({"Mounts": mounts, "Driver": esc(c.Driver)}) + "</div>" +
      '<div class="card wide"><h2>Environment</h2><pre class="mono">' + esc((cfg.Env || []).join("\n")) + "</pre></div>" +
      '<div class="card wide"><h2>Labels</h2><pre class="mono">' + esc(Object.entries(cfg.Labels || {}).map(([k, v]) => k + "=" + v).join("\n") || "–") + "</pre></div>" +
      '<details class="card wide"><summary>Raw inspect</summary><pre class="mono">' + esc(JSON.stringify(c, null, 2)) + "</pre></details></div>";
  }

  function logs() {
    panel.innerHTML = '<div class="bar small"><label class="check"><input type="checkbox" id="log-follow" checked> follow</label>' +
      '<label>since <select id="log-since"><option value="">all</option><option value="60">1 min</option><option value="600">10 min</option><option value="3600">1 h</option></select></label>' +
      '<label>tail <select id="log-tail"><option>100</option><option selected>500</option><option>5000</option><option value="all">all</option></select></label>' +
      '<input id="log-search" class="search" placeholder="Search"><label class="check"><input type="checkbox" id="log-times"> timestamps</label>' +
      '<span id="log-count" class="muted"></span></div><div id="log-view" class="logview mono"></div>';
    const view = document.getElementById("log-view"), search = document.getElementById("log-search");
    let es = null, lines = 0;
    const follow = document.getElementById("log-follow"), since = document.getElementById("log-since"),
      tail = document.getElementById("log-tail"), times = document.getElementById("log-times");
    function matches(el) { const q = search.value.toLowerCase(); return !q || el.dataset.m.toLowerCase().includes(q); }
    function open() {
      if (es) es.close();
      view.textContent = ""; lines = 0;
      let q = "tail=" + tail.value + "&follow=" + (follow.checked ? "1" : "0");
      if (since.value) q += "&since=" + Math.floor(Date.now() / 1000 - Number(since.value));
      es = stream("/api/containers/" + encodeURIComponent(c.Id) + "/logs?" + q, (batch) => {
        const atBottom = view.scrollTop + view.clientHeight >= view.scrollHeight - 30;
        const frag = document.createDocumentFragment();
        for (const l of batch) {
          const d = document.createElement("div");
          d.className = "log-line" + (l.s === 2 ? " stderr" : "");
          d.dataset.m = l.m;
          if (l.t) { const t = document.createElement("span"); t.className = "ts"; t.textContent = l.t.replace("T", " ").slice(0, 23) + " "; d.appendChild(t); }
          d.appendChild(document.createTextNode(l.m));
          if (!matches(d)) d.hidden = true;
          frag.appendChild(d); lines++;
        }
        view.appendChild(frag);
        while (view.childElementCount > 20000) { view.firstChild.remove(); }
        document.getElementById("log-count").textContent = lines + " lines";
        if (atBottom) view.scrollTop = view.scrollHeight;
      }, {end: () => { document.getElementById("log-count").textContent = lines + " lines (ended)"; es.close(); }});
    }
    view.classList.toggle("notimes", !times.checked);
    times.onchange = () => view.classList.toggle("notimes", !times.checked);
    search.oninput = () => { for (const d of view.children) d.hidden = !matches(d); };
    follow.onchange = since.onchange = tail.onchange = open;
    open();
  }

  function stats() {
    panel.innerHTML = '<div class="graphs">' + ["cpu", "mem", "net", "blk"].map((g) =>
      '<div class="card graph"><h2>' + {cpu: "CPU %", mem: "Memory", net: "Network (bytes/s)", blk: "Block I/O (bytes/s)"}[g] +
      '</h2><div id="graph-' + g + '" class="plot" data-points="0"></div></div>').join("") + "</div>";
    if (!running) { panel.insertAdjacentHTML("afterbegin", '<p class="muted">The container is not running.</p>'); }
    const N = 120, data = {cpu: [[], []], mem: [[], []], net: [[], [], []], blk: [[], [], []]};
    const plots = {};
    const mk = (g, series, fmt) => {
      const el = document.getElementById("graph-" + g);
      plots[g] = new uPlot({width: el.clientWidth || 500, height: 180, legend: {show: true},
        axes: [{stroke: "#8b949e", grid: {stroke: "#30363d"}}, {stroke: "#8b949e", grid: {stroke: "#30363d"}, values: (u, v) => v.map(fmt), size: 70}],
        scales: {x: {time: true}}, series: [{}].concat(series)}, data[g], el);
    };
    const pct = (v) => v.toFixed(1) + "%";
    mk("cpu", [{label: "CPU", stroke: "#58a6ff", fill: "rgba(88,166,255,.15)", value: (u, v) => v == null ? "–" : pct(v)}], pct);
    mk("mem", [{label: "used", stroke: "#3fb950", fill: "rgba(63,185,80,.15)", value: (u, v) => bytes(v)}], bytes);
    mk("net", [{label: "rx", stroke: "#d29922", value: (u, v) => bytes(v) + "/s"}, {label: "tx", stroke: "#db61a2", value: (u, v) => bytes(v) + "/s"}], bytes);
    mk("blk", [{label: "read", stroke: "#a371f7", value: (u, v) => bytes(v) + "/s"}, {label: "write", stroke: "#f85149", value: (u, v) => bytes(v) + "/s"}], bytes);
    let prev = null;
    const push = (g, vals) => { const d = data[g]; d.forEach((arr, i) => { arr.push(vals[i]); if (arr.length > N) arr.shift(); }); };
    stream("/api/stats?ids=" + encodeURIComponent(c.Id), (batch) => {
      const s = batch[c.Id]; if (!s) return;
      const t = s.ts;
      push("cpu", [t, s.cpu]); push("mem", [t, s.mem]);
      if (prev) {
        const dt = Math.max(t - prev.ts, 0.001);
        push("net", [t, Math.max(0, (s.rx - prev.rx) / dt), Math.max(0, (s.tx - prev.tx) / dt)]);
        push("blk", [t, Math.max(0, (s.blk_r - prev.blk_r) / dt), Math.max(0, (s.blk_w - prev.blk_w) / dt)]);
      }
      prev = s;
      for (const g of Object.keys(plots)) {
        plots[g].setData(data[g]);
        document.getElementById("graph-" + g).dataset.points = String(data[g][0].length);
      }
    });
    const onResize = () => { for (const [g, p] of Object.entries(plots)) p.setSize({width: document.getElementById("graph-" + g).clientWidth, height: 180}); };
    window.addEventListener("resize", onResize);
    onLeave(() => { window.removeEventListener("resize", onResize); for (const p of Object.values(plots)) p.destroy(); });
  }

  async function processes() {
    panel.innerHTML = '<p class="muted">Loading…</p>';
    try {
      const t = await api("GET", "/api/containers/" + encodeURIComponent(c.Id) + "/top");
      panel.innerHTML = '<table id="top-table" class="grid"><thead><tr>' + t.Titles.map((h) => "<th>" + esc(h) + "</th>").join("") +
        "</tr></thead><tbody>" + t.Processes.map((p) => "<tr>" + p.map((v) => '<td class="mono">' + esc(v) + "</td>").join("") + "</tr>").join("") + "</tbody></table>";
    } catch (e) { panel.innerHTML = '<p class="error">' + esc(e.message) + "</p>"; }
  }

  async function changes() {
    panel.innerHTML = '<p class="muted">Loading…</p>';
    try {
      const ch = await api("GET", "/api/containers/" + encodeURIComponent(c.Id) + "/changes") || [];
      const kind = {0: ["M", "modified"], 1: ["A", "added"], 2: ["D", "deleted"]};
      panel.innerHTML = ch.length ? '<table id="changes-table" class="grid"><thead><tr><th></th><th>Path</th></tr></thead><tbody>' +
        ch.map((x) => '<tr><td><span class="badge k-' + kind[x.Kind][1] + '">' + kind[x.Kind][0] + '</span></td><td class="mono">' + esc(x.Path) + "</td></tr>").join("") +
        "</tbody></table>" : '<p class="muted">No changes to the image\'s filesystem.</p>';
    } catch (e) { panel.innerHTML = '<p class="error">' + esc(e.message) + "</p>"; }
  }

  function terminal() {
    if (!running) { panel.innerHTML = '<p class="muted">Start the container to open a terminal.</p>'; return; }
    panel.innerHTML = '<div class="bar small"><label>command <input id="term-cmd" value="sh" class="search"></label>' +
      '<button class="btn" id="term-connect">Reconnect</button><span id="term-status" class="muted"></span></div><div id="terminal" class="term"></div>';
    const el = document.getElementById("terminal"), status = document.getElementById("term-status");
    let term = null, ws = null, fit = null;
    function connect() {
      if (ws) ws.close();
      if (term) term.dispose();
      term = new Terminal({cursorBlink: true, fontSize: 14, fontFamily: "DejaVu Sans Mono, Menlo, monospace",
        theme: {background: "#0d1117", foreground: "#e6edf3"}, scrollback: 5000});
      fit = new FitAddon.FitAddon(); term.loadAddon(fit); term.open(el); fit.fit();
      window.dockyardTerm = term;
      const proto = location.protocol === "https:" ? "wss://" : "ws://";
      ws = new WebSocket(proto + location.host + "/api/containers/" + encodeURIComponent(c.Id) + "/terminal?csrf=" +
        encodeURIComponent(CSRF) + "&cols=" + term.cols + "&rows=" + term.rows + "&cmd=" + encodeURIComponent(document.getElementById("term-cmd").value));
      ws.binaryType = "arraybuffer";
      const enc = new TextEncoder();
      ws.onopen = () => { status.textContent = "connected"; el.dataset.connected = "1"; term.focus(); };
      ws.onmessage = (e) => term.write(typeof e.data === "string" ? e.data : new Uint8Array(e.data));
      ws.onclose = () => { status.textContent = "disconnected"; el.dataset.connected = "0"; term.write("\r\n\x1b[2m[disconnected]\x1b[0m\r\n"); };
      term.onData((d) => { if (ws.readyState === 1) ws.send(enc.encode(d)); });
      term.onResize(({cols, rows}) => { if (ws.readyState === 1) ws.send(JSON.stringify({resize: [cols, rows]})); });
    }
    const onResize = () => fit && fit.fit();
    window.addEventListener("resize", onResize);
    document.getElementById("term-connect").onclick = connect;
    connect();
    onLeave(() => { window.removeEventListener("resize", onResize); if (ws) ws.close(); if (term) term.dispose(); });
  }
  const wanted = (location.hash.split("/")[3] || "overview");
  show(["overview", "logs", "stats", "processes", "changes", "terminal"].includes(wanted) ? wanted : "overview");
}

// ---- images ----------------------------------------------------------------------
async function pageImages() {
  main.innerHTML = '<div class="bar"><h1>Images</h1><span class="grow"></span>' +
    '<button class="btn" id="prune-images">Prune dangling</button></div>' +
    '<div class="card pull"><h2>Pull or push an image</h2><div class="row"><input id="pull-input" class="search wide" placeholder="registry.example:5000/name:tag">' +
    '<button class="btn primary" id="pull-button">Pull</button><button class="btn" id="push-button">Push</button></div>' +
    '<div class="progress"><div id="pull-bar" class="progress-bar" style="width:0%"></div></div><div id="pull-status" class="muted mono"></div></div>' +
    '<table id="images-table" class="grid"><thead><tr><th>Tags</th><th>ID</th><th>Size</th><th>Created</th><th class="actions">Actions</th></tr></thead><tbody></tbody></table>' +
    '<section id="image-detail"></section>';
  const tbody = main.querySelector("tbody"), live = owner();
  async function load() {
    try {
      const imgs = (await api("GET", "/api/images")).images;
      if (!live()) return;
      tbody.innerHTML = imgs.map((i) => '<tr data-id="' + esc(i.id) + '" data-ref="' + esc(i.tags[0] || i.id) + '"><td>' +
        (i.tags.length ? i.tags.map((t) => '<span class="tag mono">' + esc(t) + "</span>").join(" ") : '<span class="muted">&lt;none&gt;</span>') +
        '</td><td class="mono">' + short(i.id) + "</td><td>" + bytes(i.size) + '</td><td class="muted">' + ago(i.created) + "</td>" +
        '<td class="actions"><button class="btn small" data-action="detail">Layers</button><button class="btn small" data-action="tag">Tag</button>' +
        (i.tags.length ? '<button class="btn small" data-action="push">Push</button>' : "") +
        '<button class="btn small danger" data-action="remove">Remove</button></td></tr>').join("") ||
        '<tr><td colspan="5" class="empty">No images</td></tr>';
    } catch (e) { tbody.innerHTML = '<tr><td colspan="5" class="error">' + esc(e.message) + "</td></tr>"; }
  }
  async function progressCall(path, label) {
    const ref = document.getElementById("pull-input").value.trim();
    if (!ref) return toast("give an image reference", true);
    const bar = document.getElementById("pull-bar"), status = document.getElementById("pull-status");
    bar.style.width = "0%"; bar.className = "progress-bar"; bar.dataset.history = ""; status.textContent = label + " " + ref + "…";
    try {
      const r = await fetch(path, {method: "POST", headers: {"X-CSRF-Token": CSRF, "Content-Type": "application/json"},
        body: JSON.stringify({image: ref})});
      if (!r.ok) { const d = await r.json().catch(() => ({})); throw new Error(d.message || r.statusText); }
      const reader = r.body.getReader(), dec = new TextDecoder();
      let buf = "", last = null;
      for (;;) {
        const {value, done} = await reader.read(); if (done) break;
        buf += dec.decode(value, {stream: true});
        let nl;
        while ((nl = buf.indexOf("\n")) >= 0) {
          const p = JSON.parse(buf.slice(0, nl)); buf = buf.slice(nl + 1); last = p;
          bar.style.width = p.percent + "%"; bar.dataset.history += (bar.dataset.history ? "," : "") + p.percent;
          status.textContent = (p.error ? "error: " + p.error : p.status) + (p.total ? "  (" + bytes(p.current) + " / " + bytes(p.total) + ")" : "");
        }
      }
      if (last && last.error) throw new Error(last.error);
      bar.classList.add("done"); status.textContent = label + " " + ref + ": done";
      load();
    } catch (e) { bar.classList.add("failed"); status.textContent = "error: " + e.message; toast(label + ": " + e.message, true); }
  }
  document.getElementById("pull-button").onclick = () => progressCall("/api/images/pull", "pull");
  document.getElementById("push-button").onclick = () => progressCall("/api/images/push", "push");
  document.getElementById("pull-input").onkeydown = (e) => { if (e.key === "Enter") progressCall("/api/images/pull", "pull"); };
  document.getElementById("prune-images").onclick = async () => {
    if (await confirmDialog("Remove all dangling images?", "Prune")) act("prune images", () => api("POST", "/api/prune/images"), load);
  };
  tbody.onclick = async (ev) => {
    const btn = ev.target.closest("button[data-action]"); if (!btn) return;
    const tr = btn.closest("tr"), ref = tr.dataset.ref;
    if (btn.dataset.action === "remove") {
      if (await confirmDialog("Remove image " + ref + "?", "Remove"))
        act("remove " + ref, () => api("DELETE", "/api/image?ref=" + encodeURIComponent(ref)), load);
    } else if (btn.dataset.action === "tag") {
      await formDialog("Tag " + ref, [
        {name: "repo", label: "Repository", placeholder: "registry.example:5000/team/app", hint: "lower case; a registry host:port first to push there"},
        {name: "tag", label: "Tag", value: "latest"}], "Tag", async (v) => {
        let repo = v.repo, tag = v.tag;
        const [r, t] = splitRef(repo); if (t && !repo.includes("@")) { repo = r; tag = tag && tag !== "latest" ? tag : t; }
        if (!repo) throw new Error("a repository is required");
        if (!REPO_RE.test(repo)) throw new Error("not a repository name: " + repo + " (lower case letters, digits and . _ - /, an optional host:port/ first)");
        tag = tag || "latest";
        if (!TAG_RE.test(tag)) throw new Error("not a tag: " + tag + " (letters, digits, _ . -, at most 128, not starting with . or -)");
        await api("POST", "/api/images/tag", {source: tr.dataset.id, repo, tag});
        toast("tagged " + repo + ":" + tag); load();
      });
    } else if (btn.dataset.action === "push") {
      await formDialog("Push " + short(tr.dataset.id), [
        {name: "ref", label: "Push as", value: ref, hint: "one of the image's tags; the registry is the part before the first /"}], "Push", async (v) => {
        if (!v.ref) throw new Error("a reference is required");
        const [r, t] = splitRef(v.ref);
        if (!REPO_RE.test(r) || (t && !TAG_RE.test(t))) throw new Error("not an image reference: " + v.ref);
        document.getElementById("pull-input").value = v.ref;
        setTimeout(() => progressCall("/api/images/push", "push"), 0);
      });
    } else {
      const det = document.getElementById("image-detail");
      try {
        const d = await api("GET", "/api/image?ref=" + encodeURIComponent(tr.dataset.id));
        const i = d.inspect, cfg = i.Config || {};
        det.innerHTML = '<div class="cards"><div class="card"><h2>' + esc(ref) + "</h2>" + kv({"ID": '<span class="mono">' + esc(i.Id) + "</span>",
          "Created": esc(i.Created), "Size": bytes(i.Size), "Architecture": esc(i.Architecture + "/" + i.Os),
          "Cmd": '<span class="mono">' + esc((cfg.Cmd || []).join(" ")) + "</span>", "Entrypoint": '<span class="mono">' + esc((cfg.Entrypoint || []).join(" ")) + "</span>",
          "Layers": esc(((i.RootFS || {}).Layers || []).length)}) + "</div>" +
          '<div class="card wide"><h2>History</h2><table class="grid" id="history-table"><thead><tr><th>Created</th><th>Created by</th><th>Size</th></tr></thead><tbody>' +
          (d.history || []).map((h) => '<tr><td class="muted">' + ago(h.Created) + '</td><td class="mono">' + esc(h.CreatedBy) + "</td><td>" + bytes(h.Size) + "</td></tr>").join("") +
          "</tbody></table></div></div>";
        det.scrollIntoView({behavior: "smooth"});
      } catch (e) { toast(e.message, true); }
    }
  };
  const reload = debounce(load, 300);
  stream("/api/events", (ev) => { if (ev.Type === "image") reload(); });
  await load();
}

// ---- builds ----------------------------------------------------------------------
// A directory chosen in the browser goes up as a tar made here: a Blob of headers and the
// files themselves, so nothing is read into memory. Browsers do not show file modes:
// files are 0644 and directories 0755 (upload a tar to keep modes, symlinks, empty dirs).
const enc8 = new TextEncoder();
function tarHeader(name, size, mode, mtime, type) {
  const h = new Uint8Array(512);
  const put = (off, str, len) => h.set(enc8.encode(str).subarray(0, len), off);
  const oct = (n, len) => n.toString(8).padStart(len - 1, "0");
  h.set(name.subarray(0, 100), 0);
  put(100, oct(mode, 8), 7); put(108, oct(0, 8), 7); put(116, oct(0, 8), 7);
  put(124, oct(size, 12), 11); put(136, oct(mtime, 12), 11);
  h.fill(32, 148, 156); h[156] = type.charCodeAt(0);
  put(257, "ustar", 5); put(263, "00", 2);
  let sum = 0; for (const x of h) sum += x;
  put(148, oct(sum, 7), 6); h[155] = 32;
  return h;
}
const tarPad = (n) => new Uint8Array((512 - n % 512) % 512);
function paxRecord(key, value) {      // "LEN key=value\n", LEN counting itself
  const body = enc8.encode(" " + key + "=" + value + "\n");
  let len = body.length + String(body.length).length;
  if (String(len).length + body.length !== len) len = body.length + String(len).length;
  const out = new Uint8Array(String(len).length + body.length);
  out.set(enc8.encode(String(len))); out.set(body, String(len).length);
  return out;
}
function tarEntry(parts, path, size, mode, mtime, type, blob) {
  const name = enc8.encode(path), big = size > 0o77777777777;
  if (name.length > 100 || big || /[^\x20-\x7e]/.test(path)) {
    const recs = [paxRecord("path", path)].concat(big ? [paxRecord("size", String(size))] : []);
    const n = recs.reduce((a, r) => a + r.length, 0);
    parts.push(tarHeader(enc8.encode("././@PaxHeader"), n, 0o644, mtime, "x"), ...recs, tarPad(n));
  }
  parts.push(tarHeader(name, big ? 0 : size, mode, mtime, type));
  if (blob) parts.push(blob, tarPad(size));
}
function tarOfFiles(files) {          // <input webkitdirectory>'s files -> a tar Blob, paths below the chosen directory
  const parts = [], dirs = new Set(), entries = [];
  for (const f of files) {
    const rel = (f.webkitRelativePath || f.name).split("/").slice(1).join("/") || f.name;
    if (!rel || rel.split("/").some((seg) => seg === "" || seg === "." || seg === "..")) continue;
    const segs = rel.split("/");
    for (let i = 1; i < segs.length; i++) dirs.add(segs.slice(0, i).join("/"));
    entries.push([rel, f]);
  }
  const now = Math.floor(Date.now() / 1000);
  for (const d of [...dirs].sort()) tarEntry(parts, d + "/", 0, 0o755, now, "5", null);
  entries.sort((a, b) => a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0);
  for (const [rel, f] of entries) tarEntry(parts, rel, f.size, 0o644, Math.floor((f.lastModified || Date.now()) / 1000), "0", f);
  parts.push(new Uint8Array(1024));
  return {blob: new Blob(parts, {type: "application/x-tar"}), files: entries.length};
}
async function readLines(resp, onLine) {   // a fetch answer of JSON lines, each to onLine as it arrives
  const reader = resp.body.getReader(), dec = new TextDecoder();
  let buf = "";
  for (;;) {
    const {value, done} = await reader.read(); if (done) break;
    buf += dec.decode(value, {stream: true});
    let nl;
    while ((nl = buf.indexOf("\n")) >= 0) { const line = buf.slice(0, nl); buf = buf.slice(nl + 1); if (line.trim()) onLine(JSON.parse(line)); }
  }
  if (buf.trim()) onLine(JSON.parse(buf));
}
function pageBuilds() {
  main.innerHTML = '<div class="bar"><h1>Builds</h1><span class="muted">the engine\'s classic builder (POST /build)</span></div>' +
    '<form id="build-form" class="card build-form" novalidate><h2>Build an image</h2>' +
    '<div class="build-grid">' +
    '<label>Context</label><div class="ctx-choice">' +
      '<label class="check"><input type="radio" name="ctx" value="dir" id="ctx-dir-radio" checked> a directory</label>' +
      '<input type="file" id="build-dir" webkitdirectory multiple>' +
      '<label class="check"><input type="radio" name="ctx" value="tar" id="ctx-tar-radio"> a tar (.tar, .tar.gz, .tar.xz, .tar.bz2)</label>' +
      '<input type="file" id="build-tar" accept=".tar,.tgz,.gz,.xz,.bz2,.zst,application/x-tar,application/gzip">' +
      '<span class="hint">files of a directory go up as 0644 (a browser does not see modes); a tar keeps modes and symlinks</span></div>' +
    '<label for="build-dockerfile">Dockerfile</label><input id="build-dockerfile" value="Dockerfile" spellcheck="false">' +
    '<label for="build-tags">Tags</label><input id="build-tags" placeholder="app:1.0 registry.example:5000/app:1.0" spellcheck="false">' +
    '<label for="build-args">Build args</label><textarea id="build-args" rows="3" placeholder="NAME=value, one a line" spellcheck="false"></textarea>' +
    '<span></span><div><label class="check"><input type="checkbox" id="build-nocache"> no cache</label> ' +
      '<label class="check"><input type="checkbox" id="build-pull"> pull base images</label></div>' +
    '<span></span><div class="bar small"><button class="btn primary" id="build-button" type="submit">Build</button>' +
      '<button class="btn" id="build-stop" type="button" disabled>Stop watching</button><span id="build-status" class="muted"></span></div>' +
    '</div><div class="progress"><div id="build-bar" class="progress-bar" style="width:0%"></div></div></form>' +
    '<pre id="build-output" class="logview mono build-output" data-state="idle"></pre>';
  const form = document.getElementById("build-form"), out = document.getElementById("build-output"),
    status = document.getElementById("build-status"), bar = document.getElementById("build-bar"),
    button = document.getElementById("build-button"), stop = document.getElementById("build-stop");
  const dirIn = document.getElementById("build-dir"), tarIn = document.getElementById("build-tar");
  dirIn.onchange = () => { document.getElementById("ctx-dir-radio").checked = true; };
  tarIn.onchange = () => { document.getElementById("ctx-tar-radio").checked = true; };
  let abort = null;
  onLeave(() => { if (abort) abort.abort(); });
  stop.onclick = () => { if (abort) abort.abort(); };
  const append = (text, cls) => {
    const atBottom = out.scrollTop + out.clientHeight >= out.scrollHeight - 30;
    const span = document.createElement("span"); if (cls) span.className = cls; span.textContent = text;
    out.appendChild(span);
    if (atBottom) out.scrollTop = out.scrollHeight;
  };
  form.onsubmit = async (ev) => {
    ev.preventDefault();
    const useTar = document.getElementById("ctx-tar-radio").checked;
    let body, what;
    if (useTar) {
      if (!tarIn.files.length) return toast("choose a tar file for the context", true);
      body = tarIn.files[0]; what = tarIn.files[0].name + " (" + bytes(body.size) + ")";
    } else {
      if (!dirIn.files.length) return toast("choose the context directory", true);
      const t = tarOfFiles(dirIn.files); body = t.blob;
      what = (dirIn.files[0].webkitRelativePath || "").split("/")[0] + "/ (" + t.files + " files, " + bytes(body.size) + ")";
    }
    const q = new URLSearchParams();
    q.set("dockerfile", document.getElementById("build-dockerfile").value.trim() || "Dockerfile");
    for (const t of document.getElementById("build-tags").value.split(/[\s,]+/)) if (t) q.append("t", t);
    const args = {};
    for (const line of document.getElementById("build-args").value.split("\n")) {
      const l = line.trim(); if (!l || l.startsWith("#")) continue;
      const eq = l.indexOf("=");
      if (eq <= 0) return toast("build args are NAME=value, one a line: " + l, true);
      args[l.slice(0, eq).trim()] = l.slice(eq + 1);
    }
    if (Object.keys(args).length) q.set("buildargs", JSON.stringify(args));
    if (document.getElementById("build-nocache").checked) q.set("nocache", "1");
    if (document.getElementById("build-pull").checked) q.set("pull", "1");
    out.textContent = ""; out.dataset.state = "running"; delete out.dataset.image;
    bar.style.width = "0%"; bar.className = "progress-bar";
    button.disabled = true; stop.disabled = false;
    status.textContent = "sending " + what + "…";
    abort = new AbortController();
    let last = null;
    try {
      const r = await fetch("/api/build?" + q.toString(), {method: "POST", body, signal: abort.signal,
        headers: {"X-CSRF-Token": CSRF, "Content-Type": "application/x-tar"}});
      if (!r.ok) { const d = await r.json().catch(() => ({})); throw new Error(d.message || r.statusText); }
      status.textContent = "building…";
      await readLines(r, (m) => {
        last = m;
        if (m.text != null) append(m.text, m.status ? "pull" : "");
        if (m.error) append(m.error + "\n", "error");
        if (m.step) { bar.style.width = (100 * (m.step[0] - 0.5) / m.step[1]).toFixed(1) + "%"; status.textContent = "step " + m.step[0] + " of " + m.step[1]; }
      });
      if (!last || !last.done) throw new Error("the build's stream ended early");
      if (!last.ok) throw new Error(last.error || "the build failed");
      bar.style.width = "100%"; bar.classList.add("done");
      out.dataset.state = "done"; out.dataset.image = last.id || "";
      status.innerHTML = "built " + (last.id ? '<a href="#/images" class="mono">' + esc(short(last.id)) + "</a>" : "") ;
      toast("build done");
    } catch (e) {
      out.dataset.state = "failed"; bar.classList.add("failed");
      status.textContent = e.name === "AbortError" ? "stopped watching" : "failed: " + e.message;
      if (e.name !== "AbortError") { append("error: " + e.message + "\n", "error"); toast("build: " + e.message, true); }
    } finally { abort = null; button.disabled = false; stop.disabled = true; }
  };
}

// ---- volumes, networks -----------------------------------------------------------
async function simpleList(title, table, loadRows, headers, rowHTML, removeUrl, pruneKind) {
  main.innerHTML = '<div class="bar"><h1>' + title + '</h1><span class="grow"></span><button class="btn" id="prune">Prune unused</button></div>' +
    '<table id="' + table + '" class="grid"><thead><tr>' + headers.map((h) => "<th>" + h + "</th>").join("") +
    '<th class="actions">Actions</th></tr></thead><tbody></tbody></table>';
  const tbody = main.querySelector("tbody"), live = owner();
  async function load() {
    try {
      const rows = await loadRows();
      if (!live()) return;
      tbody.innerHTML = rows.map((r) => '<tr data-key="' + esc(r.key) + '">' + rowHTML(r) +
        '<td class="actions"><button class="btn small danger" data-action="remove">Remove</button></td></tr>').join("") ||
        '<tr><td colspan="' + (headers.length + 1) + '" class="empty">None</td></tr>';
    } catch (e) { tbody.innerHTML = '<tr><td colspan="' + (headers.length + 1) + '" class="error">' + esc(e.message) + "</td></tr>"; }
  }
  tbody.onclick = async (ev) => {
    const btn = ev.target.closest("button[data-action]"); if (!btn) return;
    const key = btn.closest("tr").dataset.key;
    if (await confirmDialog("Remove " + key + "?", "Remove")) act("remove " + key, () => api("DELETE", removeUrl(key)), load);
  };
  document.getElementById("prune").onclick = async () => {
    if (await confirmDialog("Remove all unused " + pruneKind + "?", "Prune")) act("prune " + pruneKind, () => api("POST", "/api/prune/" + pruneKind), load);
  };
  await load();
}
const pageVolumes = () => simpleList("Volumes", "volumes-table",
  async () => (await api("GET", "/api/volumes")).volumes.map((v) => Object.assign({key: v.Name}, v)),
  ["Name", "Driver", "Mount point", "Created"],
  (v) => '<td class="mono">' + esc(v.Name) + "</td><td>" + esc(v.Driver) + '</td><td class="mono muted">' + esc(v.Mountpoint) + '</td><td class="muted">' + esc(v.CreatedAt || "") + "</td>",
  (k) => "/api/volume?name=" + encodeURIComponent(k), "volumes");
const pageNetworks = () => simpleList("Networks", "networks-table",
  async () => (await api("GET", "/api/networks")).networks.map((n) => Object.assign({key: n.name}, n)),
  ["Name", "Driver", "Subnets", "Containers"],
  (n) => '<td><span class="mono">' + esc(n.name) + '</span><div class="muted mono">' + short(n.id) + "</div></td><td>" + esc(n.driver) +
    (n.internal ? ' <span class="badge">internal</span>' : "") + '</td><td class="mono">' + esc(n.subnets.join(", ") || "–") + "</td><td>" +
    (n.containers.map((c) => '<a href="#/container/' + esc(c.id) + '">' + esc(c.name) + "</a>" + (c.ipv4 ? ' <span class="muted mono">' + esc(c.ipv4) + "</span>" : "")).join("<br>") || '<span class="muted">–</span>') + "</td>",
  (k) => "/api/network?id=" + encodeURIComponent(k), "networks");

// ---- events ----------------------------------------------------------------------
function pageEvents() {
  main.innerHTML = '<div class="bar"><h1>Events</h1><input id="ev-filter" class="search" placeholder="Filter"><span id="ev-count" class="muted"></span></div>' +
    '<table id="events-table" class="grid"><thead><tr><th>Time</th><th>Type</th><th>Action</th><th>Object</th><th>Attributes</th></tr></thead><tbody></tbody></table>';
  const tbody = main.querySelector("tbody"), filter = document.getElementById("ev-filter");
  let n = 0;
  const since = Math.floor(Date.now() / 1000) - 3600;
  stream("/api/events?since=" + since, (ev) => {
    const a = (ev.Actor || {}).Attributes || {};
    const tr = document.createElement("tr");
    const t = new Date((ev.timeNano ? ev.timeNano / 1e6 : (ev.time || 0) * 1000));
    tr.innerHTML = '<td class="muted mono">' + esc(t.toLocaleTimeString()) + '</td><td><span class="badge t-' + esc(ev.Type) + '">' + esc(ev.Type) +
      '</span></td><td>' + esc(ev.Action) + '</td><td class="mono">' + esc(a.name || short((ev.Actor || {}).ID)) + '</td><td class="muted mono small">' +
      esc(Object.entries(a).filter(([k]) => k !== "name").map(([k, v]) => k + "=" + v).join(" ")) + "</td>";
    const q = filter.value.toLowerCase(); if (q && !tr.textContent.toLowerCase().includes(q)) tr.hidden = true;
    tbody.prepend(tr); n++;
    while (tbody.childElementCount > 2000) tbody.lastChild.remove();
    document.getElementById("ev-count").textContent = n + " events";
  });
  filter.oninput = () => { const q = filter.value.toLowerCase(); for (const tr of tbody.children) tr.hidden = !!q && !tr.textContent.toLowerCase().includes(q); };
}

// ---- system ----------------------------------------------------------------------
async function pageSystem() {
  main.innerHTML = '<div class="bar"><h1>System</h1></div><div id="sys" class="cards"><p class="muted">Loading…</p></div>';
  const live = owner();
  async function load() {
    let d; try { d = await api("GET", "/api/system"); if (!live()) return; } catch (e) { if (!live()) return; document.getElementById("sys").innerHTML = '<p class="error">' + esc(e.message) + "</p>"; return; }
    const i = d.info || {}, v = d.version || {}, df = d.df || {};
    const sum = (arr, f) => (arr || []).reduce((a, x) => a + (f(x) || 0), 0);
    const parts = [
      {k: "images", label: "Images", size: df.LayersSize || sum(df.Images, (x) => x.Size), free: sum((df.Images || []).filter((x) => !x.Containers), (x) => x.Size), color: "#58a6ff"},
      {k: "containers", label: "Containers", size: sum(df.Containers, (x) => x.SizeRw), free: sum((df.Containers || []).filter((x) => x.State !== "running"), (x) => x.SizeRw), color: "#3fb950"},
      {k: "volumes", label: "Volumes", size: sum(df.Volumes, (x) => (x.UsageData || {}).Size), free: sum((df.Volumes || []).filter((x) => !((x.UsageData || {}).RefCount)), (x) => (x.UsageData || {}).Size), color: "#d29922"},
      {k: "build", label: "Build cache", size: sum(df.BuildCache, (x) => x.Size), free: sum((df.BuildCache || []).filter((x) => !x.InUse), (x) => x.Size), color: "#a371f7"},
    ];
    const total = Math.max(1, parts.reduce((a, p) => a + Math.max(0, p.size), 0));
    const diskbar = '<div class="diskbar" id="diskbar">' + parts.map((p) => '<div class="seg" title="' + esc(p.label + ": " + bytes(p.size)) +
      '" style="width:' + (Math.max(0, p.size) / total * 100).toFixed(2) + "%;background:" + p.color + '"></div>').join("") + "</div>";
    document.getElementById("sys").innerHTML =
      '<div class="card wide"><h2>Disk usage</h2>' + (d.df ? diskbar + '<table class="grid" id="df-table"><thead><tr><th>Kind</th><th>Size</th><th>Reclaimable</th><th></th></tr></thead><tbody>' +
        parts.map((p) => '<tr><td><span class="dot" style="background:' + p.color + '"></span>' + p.label + "</td><td>" + bytes(p.size) + "</td><td>" + bytes(p.free) +
          '</td><td class="actions"><button class="btn small" data-prune="' + p.k + '">Prune</button></td></tr>').join("") +
        '<tr><td>Networks</td><td>–</td><td>–</td><td class="actions"><button class="btn small" data-prune="networks">Prune</button></td></tr></tbody></table>'
        : '<p class="error">' + esc(d.df_error || "no disk usage") + "</p>") + "</div>" +
      '<div class="card"><h2>Engine</h2>' + kv({"Name": esc(i.Name), "Server version": esc(v.Version || i.ServerVersion), "API version": esc(v.ApiVersion),
        "Storage driver": esc(i.Driver), "Cgroup": esc((i.CgroupDriver || "") + " v" + (i.CgroupVersion || "")), "Runtime": esc(i.DefaultRuntime),
        "Root dir": '<span class="mono">' + esc(i.DockerRootDir) + "</span>"}) + "</div>" +
      '<div class="card"><h2>Host</h2>' + kv({"OS": esc(i.OperatingSystem), "Kernel": esc(i.KernelVersion), "CPUs": esc(i.NCPU),
        "Memory": bytes(i.MemTotal), "Containers": esc((i.Containers || 0) + " (" + (i.ContainersRunning || 0) + " running, " + (i.ContainersPaused || 0) + " paused, " + (i.ContainersStopped || 0) + " stopped)"),
        "Images": esc(i.Images)}) + "</div>";
    for (const b of document.querySelectorAll("button[data-prune]")) b.onclick = async () => {
      const k = b.dataset.prune;
      if (await confirmDialog("Remove all unused " + k + "?", "Prune")) act("prune " + k, () => api("POST", "/api/prune/" + k), load);
    };
  }
  await load();
}

// ---- router ----------------------------------------------------------------------
function route() {
  cleanups.forEach((f) => { try { f(); } catch (e) {} }); cleanups = [];
  if (closeDialog) closeDialog(false);
  const my = ++gen;
  const parts = (location.hash || "#/containers").slice(2).split("/");
  const page = parts[0] || "containers";
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.page === page || (page === "container" && a.dataset.page === "containers"));
  main.dataset.page = page; delete main.dataset.loaded; delete main.dataset.paintedAt;
  const f = {containers: pageContainers, container: () => pageContainer(decodeURIComponent(parts[1] || "")), images: pageImages,
    volumes: pageVolumes, networks: pageNetworks, events: pageEvents, system: pageSystem, builds: pageBuilds}[page] || pageContainers;
  Promise.resolve(f()).catch((e) => { if (my === gen) main.innerHTML = '<p class="error">' + esc(e.message) + "</p>"; });
}
window.addEventListener("hashchange", route);
route();
})();
