// Courtyard's community dashboard: REST for who you are, one WebSocket for everything live.
// No build step: plain ES modules served by the hub. It speaks Simplified Chinese and English
// (i18n.js), shows times on the compound's clock, and works on a 390-pixel phone: a responder's
// incident list, an incident's card with its actions, and the site map (sitemap.js).
import { LANGUAGES, chooseLanguage, makeTranslator, compoundTime, duration } from "./i18n.js";
import { drawSiteMap, esc, classToken, floorOf, buildingOf } from "./sitemap.js";

const SEVERITY_RANK = { critical: 0, major: 1, minor: 2, warning: 3 };
const PENDING_MS = 10000;  // an action the log has not shown back by then (a no-op, a lost frame): the buttons return
const RESPONSES = ["on_my_way", "arrived", "handed_over"];  // a responder's steps, only forward
const $ = (id) => document.getElementById(id);
const num = (v) => Number(v) || 0;  // a number from a record, whatever the record holds

// Writes markup only when it changed: a redraw replaces the elements under a finger, and under
// load the board redraws many times a second.
const drawn = new WeakMap();
function setHTML(el, html) {
  if (drawn.get(el) === html) return;
  drawn.set(el, html);
  el.innerHTML = html;
}

const state = {
  token: null,
  who: null,
  community: null,
  socket: null,
  retry: 0,
  lang: "en",
  t: makeTranslator("en"),
  offset: 480,  // the compound's minutes east of UTC (whoami)
  // subscription id -> Map(key -> value)
  data: { alerts: new Map(), community: new Map(), gates: new Map(), elders: new Map(), notices: new Map(),
          site: new Map(), responses: new Map(), notifications: new Map() },
  pending: new Map(),  // alert id -> when an action on its way to the log was sent
  seen: new Set(),     // alert ids already drawn (new ones flash)
  incident: "",        // the alert whose card is open
  drawScheduled: false,
};

const time = (ms) => compoundTime(ms, state.offset);
const timeWithDate = (ms) => compoundTime(ms, state.offset, true);
const isStaff = () => ["admin", "staff"].includes(state.who?.role);
const seesCompound = () => state.who && state.who.role !== "resident";

// --- language ---

function setLanguage(lang) {
  state.lang = lang;
  state.t = makeTranslator(lang);
  document.documentElement.lang = lang;
  document.title = state.t("app.title");
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = state.t(el.dataset.i18n);
  for (const el of document.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = state.t(el.dataset.i18nPlaceholder);
  for (const el of document.querySelectorAll("[data-i18n-aria]")) el.setAttribute("aria-label", state.t(el.dataset.i18nAria));
  $("lang").innerHTML = Object.entries(LANGUAGES)
    .map(([code, name]) => `<option value="${code}" ${code === lang ? "selected" : ""}>${esc(name)}</option>`).join("");
  setLink($("link").dataset.state, $("link").dataset.detail || "");
  if (state.who) drawWho();
  scheduleDraw();
}

$("lang").addEventListener("change", () => {
  localStorage.setItem("courtyard-lang", $("lang").value);  // a preference, not a secret
  setLanguage($("lang").value);
});

// --- session ---

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
  if (Number.isInteger(state.who.utc_offset_minutes)) state.offset = state.who.utc_offset_minutes;
  $("login").hidden = true;
  $("board").hidden = false;
  drawWho();
  $("notice-form").hidden = !isStaff();
  $("map-section").hidden = !seesCompound();
  await chooseCommunities();
  connect();
}

function drawWho() {
  const w = state.who;
  $("who").textContent = `${state.t.code("role", w.role)}${w.community ? " · " + w.community : ""}${w.unit ? "/" + w.unit : ""}`;
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
  const subs = [
    { op: "subscribe", id: "alerts", prefix: `alerts/${c}:` },
    { op: "subscribe", id: "community", prefix: `communities/${c}/` },
    { op: "subscribe", id: "gates", prefix: "gates/" },
    { op: "subscribe", id: "elders", prefix: "elders/" },
    { op: "subscribe", id: "notices", prefix: `notices/${c}/` },
    // A household gets what its family was told; staff everything the compound decided.
    { op: "subscribe", id: "notifications", prefix: `notifications/${c}/` },
  ];
  if (seesCompound()) {
    subs.push({ op: "subscribe", id: "site", prefix: `site/${c}/` }, { op: "subscribe", id: "responses", prefix: `responses/${c}/` });
  }
  return subs;
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
  socket.onmessage = (event) => {
    if (state.socket === socket) receive(JSON.parse(event.data));  // not a replaced socket's last frames
  };
  socket.onclose = (event) => {
    if (state.socket !== socket) return;  // replaced on purpose
    setLink("down", event.reason || "disconnected");
    const delay = Math.min(10000, 500 * 2 ** state.retry++);
    setTimeout(connect, delay);
  };
}

function setLink(status, detail = "") {
  $("link").dataset.state = status;
  $("link").dataset.detail = detail;
  $("link").textContent = state.t(`link.${status}`, { detail });
}

function receive(m) {
  if (m.type === "snapshot") {
    const map = state.data[m.id];
    if (!map) return;
    map.clear();
    for (const item of m.items) map.set(item.key, item.value);
    if (m.id === "alerts") state.pending.clear();
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
    if (state.who) draw();
  });
}

const inCommunity = (v) => !v.community || v.community === state.community;
const alertById = (id) => state.data.alerts.get(`alerts/${id}`);
const siteEntries = () => [...state.data.site.values()].filter(inCommunity);

// --- drawing ---

function draw() {
  const t = state.t, c = state.community;
  const occupancy = state.data.community.get(`communities/${c}/occupancy`) || {};
  const meters = state.data.community.get(`communities/${c}/meters`) || {};
  $("people-now").textContent = occupancy.people_now ?? "–";
  $("vehicles-now").textContent = occupancy.vehicles_now ?? "–";

  const active = [...state.data.alerts.values()].filter((a) => a.state !== "resolved");
  const bySeverity = {};
  for (const a of active) bySeverity[a.severity] = (bySeverity[a.severity] || 0) + 1;
  $("alert-counts").innerHTML = active.length
    ? Object.keys(SEVERITY_RANK).filter((s) => bySeverity[s])
      .map((s) => `<span class="sev sev-${s}">${bySeverity[s]} ${esc(t.code("severity", s))}</span>`).join(" ")
    : "0";
  $("offline-count").textContent = active.filter((a) => a.rule === "offline").length;
  drawAlerts(active);
  if (seesCompound()) drawMap(active);
  drawIncident();
  drawResponses();
  drawNotifications();

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
    ? ["alert", "attention", "ok", "unknown"].filter((w) => wb[w])
      .map((w) => `<span class="wb-${w}">${wb[w]} ${esc(t.code("wellbeing", w))}</span>`).join(" ")
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

// The buttons `who` has for an alert now: acknowledge while unseen (for staff: until staff have; a
// household's acknowledgement stops no dispatch); a responder's next steps; resolve.
function actionsFor(a) {
  const role = state.who.role;
  if (role === "auditor" || a.state === "resolved") return [];
  const out = [];
  if (isStaff() ? !a.acknowledged_at : ["open", "escalated"].includes(a.state)) out.push("ack");
  if (isStaff()) {
    const done = RESPONSES.indexOf(a.response || "");
    for (const step of RESPONSES.slice(done + 1)) out.push(step);
    out.push("resolve");
  }
  return out;
}

function actionButtons(a) {
  const sent = state.pending.get(a.id);
  if (sent && Date.now() - sent > PENDING_MS) state.pending.delete(a.id);
  else if (sent) return `<em>${esc(state.t("action.sending"))}</em>`;
  return actionsFor(a).map((action) => `<button data-action="${action}">${esc(state.t(`action.${action}`))}</button>`).join(" ");
}

// Who has it: the responder's role (and, for staff, their person token).
function assigneeText(a) {
  if (!a.assignee_role) return "";
  return state.t.code("role", a.assignee_role) + (a.assignee && seesCompound() ? ` · ${a.assignee}` : "");
}

function drawAlerts(active) {
  const t = state.t;
  active.sort((a, b) => (SEVERITY_RANK[a.severity] ?? 9) - (SEVERITY_RANK[b.severity] ?? 9) || b.opened_at - a.opened_at);
  setHTML($("alerts").querySelector("tbody"), active.map((a) => {
    const fresh = !state.seen.has(a.id);
    // Camera rules carry the snapshot that shows them (faces blurred; staff, admin, auditor).
    const picture = a.snapshot_id && seesCompound()
      ? ` <button data-snapshot="${esc(String(a.snapshot_id))}">${esc(t("action.snapshot"))}</button>` : "";
    // A household's alert: its emergency contacts, opened on demand (each opening is in the read trail).
    const contacts = a.unit && state.who.role !== "auditor" ? ` <button data-contacts="1">${esc(t("action.contacts"))}</button>` : "";
    return `<tr data-alert-id="${esc(a.id)}" data-rule="${esc(a.rule)}" data-state="${esc(a.state)}" class="${fresh ? "new" : ""}">
      <td class="sev sev-${classToken(a.severity)}">${esc(t.code("severity", a.severity))}</td><td class="what">${esc(t.code("rule", a.rule))}</td>
      <td class="where">${esc(a.location)}${a.unit ? " · " + esc(a.unit) : ""}</td><td class="detail">${esc(a.detail)}</td>
      <td class="state" data-state="${esc(a.state)}">${esc(t.code("state", a.state))}</td>
      <td class="assignee">${esc(assigneeText(a))}${a.response ? ` <span class="response">${esc(t.code("response", a.response))}</span>` : ""}</td>
      <td class="since" data-ms="${Number(a.opened_at) || 0}">${time(a.opened_at)}</td>
      <td class="actions">${actionButtons(a)}${picture}${contacts}</td></tr>`;
  }).join(""));
  for (const a of active) state.seen.add(a.id);
  $("no-alerts").hidden = active.length > 0;
}

function drawMap(active) {
  const gates = [...state.data.gates.entries()].filter(([, v]) => inCommunity(v)).map(([k, v]) => [k.slice(6), v]);
  const map = drawSiteMap({ site: siteEntries(), alerts: active, gates, t: state.t, selected: state.incident });
  const svg = $("sitemap");
  svg.setAttribute("viewBox", map.viewBox);
  setHTML(svg, map.markup);
}

// The open incident's card: where exactly, who has it, what happened so far, and what to do next.
function drawIncident() {
  const dialog = $("incident");
  if (!state.incident || !dialog.open) return;
  const t = state.t, a = alertById(state.incident);
  if (!a) {
    setHTML($("incident-body"), `<p class="quiet">${esc(t("incident.gone"))}</p>`);
    return;
  }
  const buildings = siteEntries().filter((e) => e.kind === "building" && !e.removed);
  const buildingId = buildingOf(a, buildings);
  const building = buildings.find((b) => b.id === buildingId);
  const grid = siteEntries().find((e) => e.kind === "grid" && e.id === a.grid);
  const floor = floorOf(a.unit, building?.floors);
  const row = (key, value, cls = "") => (value ? `<dt>${esc(t(key))}</dt><dd class="${cls}">${value}</dd>` : "");
  const chain = (a.timeline || []).map((s) =>
    `<li data-what="${esc(s.what)}"><span class="quiet" data-ms="${Number(s.at) || 0}">${time(s.at)}</span>
      <strong>${esc(t.code("what", s.what))}</strong> ${esc(s.by)}${s.note ? ` <span class="quiet">${esc(s.note)}</span>` : ""}</li>`).join("");
  const contacts = a.unit && state.who.role !== "auditor" ? ` <button data-contacts="1">${esc(t("action.contacts"))}</button>` : "";
  setHTML($("incident-body"), `<div data-alert-id="${esc(a.id)}" data-rule="${esc(a.rule)}" data-state="${esc(a.state)}">
    <h3 id="incident-title"><span class="sev sev-${classToken(a.severity)}">${esc(t.code("severity", a.severity))}</span>
      ${esc(t.code("rule", a.rule))}</h3>
    <dl>
      ${row("incident.where", esc(a.location), "where")}
      ${row("incident.building", building ? esc(building.label || building.id) : esc(a.building))}
      ${row("incident.floor", floor ? esc(t("map.floor", { n: floor })) : "")}
      ${row("incident.unit", esc(a.unit))}
      ${row("incident.grid", grid ? esc(grid.label || grid.id) : esc(a.grid))}
      ${row("incident.state", `<span class="state" data-state="${esc(a.state)}">${esc(t.code("state", a.state))}</span>`)}
      ${row("incident.assignee", esc(assigneeText(a)) || `<span class="quiet">${esc(t("incident.nobody"))}</span>`, "assignee")}
      ${row("incident.response", esc(t.code("response", a.response)))}
      ${row("incident.opened", `<span data-ms="${Number(a.opened_at) || 0}">${timeWithDate(a.opened_at)}</span>`, "opened")}
      ${row("incident.detail", esc(a.detail))}
    </dl>
    <h4>${esc(t("incident.chain"))}</h4><ol class="chain">${chain}</ol>
    <p class="actions">${actionButtons(a)}${contacts}</p></div>`);
}

function openIncident(id) {
  state.incident = id;
  const dialog = $("incident");
  if (!dialog.open) dialog.showModal();
  drawIncident();
  scheduleDraw();  // the map marks the one chosen
}

$("incident").addEventListener("close", () => {
  state.incident = "";
  scheduleDraw();
});

// Today's figures (the latest day the compound has): median time to acknowledge and arrive, and how many were late.
function drawResponses() {
  const days = [...state.data.responses.entries()].filter(([, v]) => inCommunity(v)).sort(([a], [b]) => a.localeCompare(b));
  const latest = days.length ? days[days.length - 1][1] : null;
  const f = latest?.figures;
  $("response-today").textContent = f
    ? state.t("response.summary", { ack: duration(f.acknowledge?.p50_ms), arrive: duration(f.arrive?.p50_ms), breached: f.breached ?? 0 })
    : "–";
}

function drawNotifications() {
  const t = state.t;
  const items = [...state.data.notifications.values()].filter(inCommunity).sort((a, b) => (b.at || 0) - (a.at || 0)).slice(0, 20);
  $("notifications").innerHTML = items.length
    ? items.map((n) => {
      const sent = n.webhook?.state;
      return `<li data-what="${esc(n.what)}" data-to="${esc(n.to)}"><span class="quiet">${timeWithDate(n.at)}</span>
        ${esc(t.code("to", n.to))}: <strong>${esc(t.code("what", n.what))}</strong> · ${esc(t.code("rule", n.rule))}
        ${n.location ? " · " + esc(n.location) : ""}${sent ? ` <span class="webhook webhook-${classToken(sent)}">${esc(t.code("webhook", sent))}</span>` : ""}</li>`;
    }).join("")
    : `<li class="quiet">${esc(t("notifications.none"))}</li>`;
}

// The gates that passed someone last, most recent first.
function drawGates(gates) {
  gates.sort(([, a], [, b]) => b.last_pass_ms - a.last_pass_ms);
  $("gates").querySelector("tbody").innerHTML = gates.slice(0, 12).map(([key, g]) =>
    `<tr><td>${esc(g.location || key.slice(6))}</td><td>${num(g.passes)}</td><td>${num(g.granted)}</td><td>${num(g.denied)}</td>
     <td>${num(g.fevers)}</td><td>${time(g.last_pass_ms)}</td></tr>`).join("");
}

const WELLBEING_RANK = { alert: 0, attention: 1, unknown: 2, ok: 3 };

// Who needs someone first.
function drawElders(elders) {
  const ranked = [...elders].sort(([ka, a], [kb, b]) => (WELLBEING_RANK[a.wellbeing] ?? 9) - (WELLBEING_RANK[b.wellbeing] ?? 9) || ka.localeCompare(kb));
  $("elders").querySelector("tbody").innerHTML = ranked.map(([key, e]) => {
    const hr = e.heart_rate_stats, spo2 = e.spo2_stats;
    return `<tr><td>${esc(key.slice(7))}</td><td>${esc(e.unit)}</td><td class="wb-${classToken(e.wellbeing)}">${esc(state.t.code("wellbeing", e.wellbeing))}</td>
      <td>${hr ? `${Math.round(hr.mean)} (${num(hr.min)}–${num(hr.max)})` : "–"}</td><td>${spo2 ? Math.round(spo2.mean) + "%" : "–"}</td>
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
    ? notices.map((n) => `<li class="notice-${classToken(n.severity)}"><strong>${esc(n.title)}</strong> ${esc(n.text)}
        <span class="quiet">${n.unit ? "· " + esc(n.unit) + " " : ""}${timeWithDate(n.issued_at)}</span></li>`).join("")
    : `<li class="quiet">${esc(state.t("notices.none"))}</li>`;
}

function lastEntries(series, n) {
  return Object.entries(series || {}).sort(([a], [b]) => a.localeCompare(b)).slice(-n);
}

// Bars for one or two series of [label, value], in plain SVG.
function barChart(svg, rawSeries, rawSecond = null) {
  const series = rawSeries.map(([label, v]) => [label, num(v)]), second = rawSecond && rawSecond.map(([label, v]) => [label, num(v)]);
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
  svg.innerHTML = series.length ? out : `<text x="${W / 2 - 30}" y="${H / 2}">${esc(state.t("chart.empty"))}</text>`;
}

function lineChart(svg, rawValues) {
  const values = Array.isArray(rawValues) ? rawValues.map(num) : [];
  const W = 480, H = 160, top = 10, bottom = 10, left = 30;
  if (values.length < 2) {
    svg.innerHTML = `<text x="${W / 2 - 30}" y="${H / 2}">${esc(state.t("chart.empty"))}</text>`;
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
  const t = state.t;
  if (p.erased) return `<span class="quiet">${esc(t("contacts.erased"))}</span>`;
  if (p.withheld) return `<span class="quiet">${esc(t("contacts.withheld"))}</span>`;
  if (!p.fields) return `<span class="quiet">${esc(t("contacts.unavailable", { why: p.error || "unknown person" }))}</span>`;
  const f = p.fields;
  const phone = f.phone ? ` · <a href="tel:${esc(f.phone.replace(/[^0-9+]/g, ""))}">${esc(f.phone)}</a>` : "";
  return `<strong>${esc(f.name)}</strong>${f.relationship ? " (" + esc(f.relationship) + ")" : ""}${phone}`;
}

async function showContacts(id, caption) {
  const t = state.t;
  const answer = await api(`/api/v1/alerts/${encodeURIComponent(id)}/contacts`);
  $("contacts-title").textContent = `${t("contacts.title")}: ${caption}`;
  const wearer = answer.wearer ? `<p>${esc(t("contacts.wearer"))}: ${personLine(answer.wearer)}</p>` : "";
  const list = answer.contacts.length
    ? `<ol>${answer.contacts.map((c) => `<li data-subject="${esc(c.subject)}">${personLine(c)}</li>`).join("")}</ol>`
    : `<p class="quiet">${esc(t("contacts.none"))}</p>`;
  $("contacts-list").innerHTML = wearer + list;
  $("contacts-dialog").showModal();
}

const captionOf = (a) => `${state.t.code("rule", a.rule)}, ${a.location || ""}${a.unit ? " · " + a.unit : ""}`;

async function act(id, action) {
  state.pending.set(id, Date.now());
  setTimeout(scheduleDraw, PENDING_MS + 100);
  scheduleDraw();
  try {
    await api(`/api/v1/alerts/${encodeURIComponent(id)}/${action}`, {
      method: "POST", body: JSON.stringify({ note: "from the dashboard" }),
    });
  } catch (e) {
    state.pending.delete(id);
    alert(state.t("error.action", { action: state.t(`action.${action}`), why: e.message }));
    scheduleDraw();
  }
}

// What a press is on: an alert (its row, its card, its mark on the map) and which of its buttons.
function intentOf(target) {
  const holder = target?.closest?.("[data-alert-id]");
  if (!holder || !$("board").contains(holder)) return null;
  return { id: holder.dataset.alertId, zone: holder.closest("#sitemap, #alerts, #incident"), pressed: target,
           action: target.closest("button[data-action]")?.dataset.action, contacts: !!target.closest("button[data-contacts]"),
           snapshot: target.closest("button[data-snapshot]")?.dataset.snapshot, inCard: !!holder.closest("#incident") };
}

// A redraw between finger down and up replaces the element pressed, and the click then lands on
// the redrawn map or list around it: what was under the finger at pointerdown is what was meant.
let pressed = null;
document.addEventListener("pointerdown", (event) => { pressed = intentOf(event.target); }, true);

// Buttons of an alert, wherever it is drawn (its row, its card): the alert is the nearest [data-alert-id].
document.addEventListener("click", async (event) => {
  let intent = intentOf(event.target);
  // The element pressed is gone (redrawn) and the click landed on what holds it: the press counts.
  if (!intent && pressed && !pressed.pressed.isConnected && pressed.zone?.contains(event.target)) intent = pressed;
  pressed = null;
  if (!intent) return;
  const a = alertById(intent.id) || { id: intent.id };
  if (intent.contacts) {
    try {
      await showContacts(a.id, captionOf(a));
    } catch (e) {
      alert(state.t("error.contacts", { why: e.message }));
    }
    return;
  }
  if (intent.snapshot) {
    try {
      await showSnapshot(intent.snapshot, `${a.location || ""}: ${a.detail || ""}`);
    } catch (e) {
      alert(state.t("error.snapshot", { why: e.message }));
    }
    return;
  }
  if (intent.action) return act(a.id, intent.action);
  // Anywhere else on a row or a mark on the map: its card.
  if (!intent.inCard) openIncident(a.id);
});

$("sitemap").addEventListener("keydown", (event) => {
  const mark = event.target.closest?.("[data-alert-id]");
  if (mark && (event.key === "Enter" || event.key === " ")) {
    event.preventDefault();
    openIncident(mark.dataset.alertId);
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
    alert(state.t("error.notice", { why: e.message }));
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

setLanguage(chooseLanguage(localStorage.getItem("courtyard-lang"), navigator.languages || [navigator.language]));
start();
