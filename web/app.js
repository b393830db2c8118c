// Courtyard's community dashboard: REST for who you are, one WebSocket for everything live.
// No build step: a plain ES module served by the hub.

const SEVERITY_RANK = { critical: 0, major: 1, minor: 2, warning: 3 };
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const state = {
  token: null,
  who: null,
  community: null,
  socket: null,
  retry: 0,
  // subscription id -> Map(key -> value)
  data: { alerts: new Map(), community: new Map(), gates: new Map(), elders: new Map(), notices: new Map() },
  pending: new Set(),  // alert ids with an action on its way to the log
  seen: new Set(),     // alert ids already drawn (new ones flash)
  drawScheduled: false,
};

function takeToken() {
  const hash = new URLSearchParams(location.hash.slice(1));
  if (hash.get("token")) {
    sessionStorage.setItem("courtyard-token", hash.get("token"));
    if (hash.get("community")) sessionStorage.setItem("courtyard-community", hash.get("community"));
    history.replaceState(null, "", location.pathname);
  }
  return sessionStorage.getItem("courtyard-token");
}

async function api(path, options = {}) {
  const res = await fetch(path, {
    ...options,
    headers: { Authorization: `Bearer ${state.token}`, "Content-Type": "application/json", ...(options.headers || {}) },
  });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw Object.assign(new Error(body.detail || res.statusText), { status: res.status });
  return body;
}

async function start() {
  state.token = takeToken();
  if (!state.token) return showLogin("");
  try {
    state.who = await api("/api/v1/whoami");
  } catch (e) {
    sessionStorage.removeItem("courtyard-token");
    return showLogin(e.message);
  }
  $("login").hidden = true;
  $("board").hidden = false;
  $("who").textContent = `${state.who.role}${state.who.community ? " · " + state.who.community : ""}${state.who.unit ? "/" + state.who.unit : ""}`;
  $("notice-form").hidden = !["admin", "staff"].includes(state.who.role);
  await chooseCommunities();
  connect();
}

function showLogin(message) {
  $("board").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message;
}

async function chooseCommunities() {
  let communities = [];
  if (state.who.community) {
    communities = [state.who.community];
  } else {
    const page = await api("/api/v1/communities?limit=1000");
    communities = [...new Set(page.items.map((i) => i.id.split("/")[0]))];
  }
  const wanted = sessionStorage.getItem("courtyard-community");
  state.community = communities.includes(wanted) ? wanted : communities[0] || "";
  $("community").innerHTML = communities.map((c) => `<option ${c === state.community ? "selected" : ""}>${esc(c)}</option>`).join("");
  $("community").disabled = communities.length < 2;
}

function subscriptions() {
  const c = state.community;
  return [
    { op: "subscribe", id: "alerts", prefix: `alerts/${c}:` },
    { op: "subscribe", id: "community", prefix: `communities/${c}/` },
    { op: "subscribe", id: "gates", prefix: "gates/" },
    { op: "subscribe", id: "elders", prefix: "elders/" },
    { op: "subscribe", id: "notices", prefix: `notices/${c}/` },
  ];
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  // The token rides in the subprotocol list, never in the URL (proxies and logs keep URLs).
  const socket = new WebSocket(`${scheme}://${location.host}/api/v1/subscribe`, ["courtyard.v1", `bearer.${state.token}`]);
  state.socket = socket;
  setLink("connecting");
  socket.onopen = () => {
    state.retry = 0;
    for (const m of subscriptions()) socket.send(JSON.stringify(m));
  };
  socket.onmessage = (event) => receive(JSON.parse(event.data));
  socket.onclose = (event) => {
    if (state.socket !== socket) return;  // replaced on purpose
    setLink("down", event.reason || "disconnected");
    const delay = Math.min(10000, 500 * 2 ** state.retry++);
    setTimeout(connect, delay);
  };
}

function setLink(status, detail) {
  $("link").dataset.state = status;
  $("link").textContent = status === "down" ? `offline (${detail}), retrying` : status;
}

function receive(m) {
  if (m.type === "snapshot") {
    const map = state.data[m.id];
    map.clear();
    for (const item of m.items) map.set(item.key, item.value);
    setLink("live");
  } else if (m.type === "changes") {
    for (const change of m.changes) {
      for (const sub of change.subs) state.data[sub]?.set(change.key, change.value);
      if (change.key.startsWith("alerts/")) state.pending.delete(change.value.id);
    }
  } else if (m.type === "error") {
    console.warn("subscription", m.id, m.error, m.detail);
  }
  scheduleDraw();
}

function scheduleDraw() {
  if (state.drawScheduled) return;
  state.drawScheduled = true;
  requestAnimationFrame(() => {
    state.drawScheduled = false;
    draw();
  });
}

const inCommunity = (v) => !v.community || v.community === state.community;
const time = (ms) => (ms ? new Date(ms).toLocaleTimeString() : "–");

function draw() {
  const c = state.community;
  const occupancy = state.data.community.get(`communities/${c}/occupancy`) || {};
  const meters = state.data.community.get(`communities/${c}/meters`) || {};
  $("people-now").textContent = occupancy.people_now ?? "–";
  $("vehicles-now").textContent = occupancy.vehicles_now ?? "–";

  const active = [...state.data.alerts.values()].filter((a) => a.state !== "resolved");
  const bySeverity = {};
  for (const a of active) bySeverity[a.severity] = (bySeverity[a.severity] || 0) + 1;
  $("alert-counts").innerHTML = active.length
    ? Object.keys(SEVERITY_RANK).filter((s) => bySeverity[s]).map((s) => `<span class="sev sev-${s}">${bySeverity[s]} ${s}</span>`).join(" ")
    : "0";
  $("offline-count").textContent = active.filter((a) => a.rule === "offline").length;
  drawAlerts(active);

  const today = (series) => {
    const days = Object.keys(series || {}).sort();
    return days.length ? series[days[days.length - 1]] : 0;
  };
  const kinds = meters.daily_by_kind || {};
  $("meters-today").innerHTML = Object.keys(kinds).length
    ? Object.entries(kinds).map(([k, s]) => `<span class="small">${esc(k)} ${today(s).toFixed(1)}</span>`).join("<br>")
    : "–";

  const elders = [...state.data.elders.entries()].filter(([, v]) => inCommunity(v));
  const wb = {};
  for (const [, e] of elders) wb[e.wellbeing] = (wb[e.wellbeing] || 0) + 1;
  $("wellbeing").innerHTML = elders.length
    ? ["alert", "attention", "ok", "unknown"].filter((w) => wb[w]).map((w) => `<span class="wb-${w}">${wb[w]} ${w}</span>`).join(" ")
    : "–";
  drawElders(elders);
  drawGates([...state.data.gates.entries()].filter(([, v]) => inCommunity(v)));
  drawNotices();

  barChart($("occupancy-chart"), lastEntries(occupancy.entries_per_hour, 24).map(([k, v]) => [k.slice(11) + "h", v]));
  const days = [...new Set(Object.values(kinds).flatMap((s) => Object.keys(s)))].sort().slice(-14);
  barChart($("consumption-chart"), days.map((d) => [d.slice(5), kinds.electricity?.[d] || 0]),
           days.map((d) => [d.slice(5), kinds.water?.[d] || 0]));
  drawVitals(elders);
}

function drawAlerts(active) {
  active.sort((a, b) => (SEVERITY_RANK[a.severity] ?? 9) - (SEVERITY_RANK[b.severity] ?? 9) || b.opened_at - a.opened_at);
  const canResolve = ["admin", "staff"].includes(state.who.role);
  const canAct = state.who.role !== "auditor";
  $("alerts").querySelector("tbody").innerHTML = active.map((a) => {
    const fresh = !state.seen.has(a.id);
    const busy = state.pending.has(a.id);
    const buttons = !canAct ? "" : busy ? "<em>sending…</em>" :
      (["open", "escalated"].includes(a.state) ? `<button data-action="ack">Acknowledge</button> ` : "") +
      (canResolve ? `<button data-action="resolve">Resolve</button>` : "");
    // Camera rules carry the snapshot that shows them (faces blurred; staff, admin, auditor).
    const picture = a.snapshot_id && state.who.role !== "resident"
      ? ` <button data-snapshot="${esc(String(a.snapshot_id))}">Snapshot</button>` : "";
    // A household's alert: its emergency contacts, opened on demand (each opening is in the read trail).
    const contacts = a.unit && canAct ? ` <button data-contacts="1">Contacts</button>` : "";
    return `<tr data-alert-id="${esc(a.id)}" data-rule="${esc(a.rule)}" class="${fresh ? "new" : ""}">
      <td class="sev sev-${esc(a.severity)}">${esc(a.severity)}</td><td>${esc(a.rule.replaceAll("_", " "))}</td>
      <td>${esc(a.location)}${a.unit ? " · " + esc(a.unit) : ""}</td><td>${esc(a.detail)}</td>
      <td class="state">${esc(a.state)}</td><td>${time(a.opened_at)}</td><td>${buttons}${picture}${contacts}</td></tr>`;
  }).join("");
  for (const a of active) state.seen.add(a.id);
  $("no-alerts").hidden = active.length > 0;
}

// The gates that passed someone last, most recent first.
function drawGates(gates) {
  gates.sort(([, a], [, b]) => b.last_pass_ms - a.last_pass_ms);
  $("gates").querySelector("tbody").innerHTML = gates.slice(0, 12).map(([key, g]) =>
    `<tr><td>${esc(g.location || key.slice(6))}</td><td>${g.passes}</td><td>${g.granted}</td><td>${g.denied}</td>
     <td>${g.fevers}</td><td>${time(g.last_pass_ms)}</td></tr>`).join("");
}

const WELLBEING_RANK = { alert: 0, attention: 1, unknown: 2, ok: 3 };

// Who needs someone first.
function drawElders(elders) {
  const ranked = [...elders].sort(([ka, a], [kb, b]) => (WELLBEING_RANK[a.wellbeing] ?? 9) - (WELLBEING_RANK[b.wellbeing] ?? 9) || ka.localeCompare(kb));
  $("elders").querySelector("tbody").innerHTML = ranked.map(([key, e]) => {
    const hr = e.heart_rate_stats, spo2 = e.spo2_stats;
    return `<tr><td>${esc(key.slice(7))}</td><td>${esc(e.unit)}</td><td class="wb-${esc(e.wellbeing)}">${esc(e.wellbeing)}</td>
      <td>${hr ? `${Math.round(hr.mean)} (${hr.min}–${hr.max})` : "–"}</td><td>${spo2 ? Math.round(spo2.mean) + "%" : "–"}</td>
      <td>${time(e.last_movement_ms)}</td></tr>`;
  }).join("");
  const select = $("elder");
  const chosen = select.value;
  const options = elders.map(([key]) => key.slice(7));
  if (select.options.length !== options.length) {
    select.innerHTML = options.map((o) => `<option ${o === chosen ? "selected" : ""}>${esc(o)}</option>`).join("");
  }
}

function drawVitals(elders) {
  const chosen = elders.find(([key]) => key.slice(7) === $("elder").value) || elders[0];
  const rates = chosen ? chosen[1].heart_rates || [] : [];
  lineChart($("vitals-chart"), rates);
}

function drawNotices() {
  const notices = [...state.data.notices.values()].sort((a, b) => b.issued_at - a.issued_at).slice(0, 20);
  $("notices").innerHTML = notices.length
    ? notices.map((n) => `<li class="notice-${esc(n.severity)}"><strong>${esc(n.title)}</strong> ${esc(n.text)}
        <span class="quiet">${n.unit ? "· " + esc(n.unit) + " " : ""}${time(n.issued_at)}</span></li>`).join("")
    : `<li class="quiet">No notices.</li>`;
}

function lastEntries(series, n) {
  return Object.entries(series || {}).sort(([a], [b]) => a.localeCompare(b)).slice(-n);
}

// Bars for one or two series of [label, value], in plain SVG.
function barChart(svg, series, second = null) {
  const W = 480, H = 160, top = 10, bottom = 20, left = 30;
  const all = [...series, ...(second || [])].map(([, v]) => v);
  const max = Math.max(1, ...all);
  const n = Math.max(1, series.length), slot = Math.min((W - left) / n, 40), width = second ? slot * 0.4 : slot * 0.7;
  const y = (v) => top + (H - top - bottom) * (1 - v / max);
  let out = `<text x="0" y="${top + 4}">${max.toFixed(0)}</text><text x="0" y="${H - bottom}">0</text>`;
  series.forEach(([label, v], i) => {
    const x = left + i * slot;
    out += `<rect class="bar" x="${x}" y="${y(v)}" width="${width}" height="${H - bottom - y(v)}"><title>${esc(label)}: ${v}</title></rect>`;
    if (second) {
      const w = second[i][1];
      out += `<rect class="bar water" x="${x + width}" y="${y(w)}" width="${width}" height="${H - bottom - y(w)}"><title>${esc(label)} water: ${w}</title></rect>`;
    }
    if (n <= 14 || i % 3 === 0) out += `<text x="${x}" y="${H - 6}">${esc(label)}</text>`;
  });
  svg.innerHTML = series.length ? out : `<text x="${W / 2 - 30}" y="${H / 2}">no data yet</text>`;
}

function lineChart(svg, values) {
  const W = 480, H = 160, top = 10, bottom = 10, left = 30;
  if (values.length < 2) {
    svg.innerHTML = `<text x="${W / 2 - 30}" y="${H / 2}">no data yet</text>`;
    return;
  }
  const lo = Math.min(...values) - 5, hi = Math.max(...values) + 5;
  const x = (i) => left + (i * (W - left)) / (values.length - 1);
  const y = (v) => top + (H - top - bottom) * (1 - (v - lo) / (hi - lo));
  svg.innerHTML = `<text x="0" y="${top + 4}">${Math.round(hi)}</text><text x="0" y="${H - bottom}">${Math.round(lo)}</text>
    <polyline class="line" points="${values.map((v, i) => `${x(i)},${y(v)}`).join(" ")}"></polyline>`;
}

// The picture needs the token in a header, so it is fetched, not linked.
async function showSnapshot(id, caption) {
  const res = await fetch(`/api/v1/snapshots/${encodeURIComponent(id)}.jpg`, { headers: { Authorization: `Bearer ${state.token}` } });
  if (!res.ok) {
    const body = await res.json().catch(() => ({}));
    throw new Error(body.detail || res.statusText);
  }
  const image = $("snapshot-image");
  if (image.src) URL.revokeObjectURL(image.src);
  image.src = URL.createObjectURL(await res.blob());
  $("snapshot-caption").textContent = caption;
  $("snapshot-dialog").showModal();
}

// One person as the contacts answer shows them: name, relationship and a number to call, or why not.
function personLine(p) {
  if (p.erased) return `<span class="quiet">erased (forgotten at their request or by retention)</span>`;
  if (p.withheld) return `<span class="quiet">withheld from your role</span>`;
  if (!p.fields) return `<span class="quiet">unavailable (${esc(p.error || "unknown person")})</span>`;
  const f = p.fields;
  const phone = f.phone ? ` · <a href="tel:${esc(f.phone.replace(/[^0-9+]/g, ""))}">${esc(f.phone)}</a>` : "";
  return `<strong>${esc(f.name)}</strong>${f.relationship ? " (" + esc(f.relationship) + ")" : ""}${phone}`;
}

async function showContacts(id, caption) {
  const answer = await api(`/api/v1/alerts/${encodeURIComponent(id)}/contacts`);
  $("contacts-title").textContent = `Whom to call: ${caption}`;
  const wearer = answer.wearer ? `<p>Wearer: ${personLine(answer.wearer)}</p>` : "";
  const list = answer.contacts.length
    ? `<ol>${answer.contacts.map((c) => `<li data-subject="${esc(c.subject)}">${personLine(c)}</li>`).join("")}</ol>`
    : `<p class="quiet">No emergency contacts recorded for this household.</p>`;
  $("contacts-list").innerHTML = wearer + list;
  $("contacts-dialog").showModal();
}

$("alerts").addEventListener("click", async (event) => {
  const who = event.target.closest("button[data-contacts]");
  if (who) {
    const row = who.closest("tr");
    try {
      await showContacts(row.dataset.alertId, row.cells[1].textContent + ", " + row.cells[2].textContent);
    } catch (e) {
      alert(`No contacts: ${e.message}`);
    }
    return;
  }
  const picture = event.target.closest("button[data-snapshot]");
  if (picture) {
    const row = picture.closest("tr");
    try {
      await showSnapshot(picture.dataset.snapshot, row.cells[2].textContent + ": " + row.cells[3].textContent);
    } catch (e) {
      alert(`No snapshot: ${e.message}`);
    }
    return;
  }
  const button = event.target.closest("button[data-action]");
  if (!button) return;
  const id = button.closest("tr").dataset.alertId;
  state.pending.add(id);
  scheduleDraw();
  try {
    await api(`/api/v1/alerts/${encodeURIComponent(id)}/${button.dataset.action}`, {
      method: "POST", body: JSON.stringify({ note: "from the dashboard" }),
    });
  } catch (e) {
    state.pending.delete(id);
    alert(`Could not ${button.dataset.action}: ${e.message}`);
    scheduleDraw();
  }
});

$("notice-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    await api("/api/v1/notices", {
      method: "POST",
      body: JSON.stringify({ community: state.community, title: $("notice-title").value, text: $("notice-text").value,
                             severity: $("notice-severity").value }),
    });
    $("notice-form").reset();
  } catch (e) {
    alert(`Could not post the notice: ${e.message}`);
  }
});

$("community").addEventListener("change", () => {
  state.community = $("community").value;
  sessionStorage.setItem("courtyard-community", state.community);
  for (const map of Object.values(state.data)) map.clear();
  const old = state.socket;
  state.socket = null;
  old?.close();
  connect();
});

$("elder").addEventListener("change", scheduleDraw);

$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem("courtyard-token", $("token").value.trim());
  start();
});

start();
