// The compound drawn from its structure (site/{community}/building|grid/...): buildings where their
// `map` coordinates put them (metres from the compound's corner), or on a plain grid when none are
// given; each grid as a dashed outline around its buildings; live incidents on their building, at
// their floor when the unit's number says it; gates with their passes beside the building that lists
// them. Pure: data in, SVG markup out; app.js owns the page.

const BOX_W = 110, BOX_H = 76, CELL_W = 150, CELL_H = 140, MARGIN = 28, MAX_W = 600;
const SEVERITY_RANK = { critical: 0, major: 1, minor: 2, warning: 3 };

export const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
// A code as part of a class name (sev-critical): one word of a-z and _, or "other"; never a way to add classes.
export const classToken = (v) => (/^[a-z_]{1,32}$/.test(String(v)) ? v : "other");

// "b3-1201" -> 12, "b1-101" -> 1: the floor a unit's number names (hundreds), when it names one.
export function floorOf(unit, floors) {
  const m = /(\d{3,4})$/.exec(String(unit || ""));
  if (!m) return 0;
  const floor = Math.floor(Number(m[1]) / 100);
  return floor >= 1 && (!floors || floor <= floors) ? floor : 0;
}

// Where each building goes, and each grid's outline around its buildings.
export function layoutSite(entries) {
  const live = entries.filter((e) => e && !e.removed && typeof e.id === "string");
  const grids = live.filter((e) => e.kind === "grid").sort((a, b) => a.id.localeCompare(b.id));
  const gridOf = (id) => grids.findIndex((g) => Array.isArray(g.members) && g.members.includes(id));
  const buildings = live.filter((e) => e.kind === "building")
    .sort((a, b) => (gridOf(a.id) + 1 || 1e9) - (gridOf(b.id) + 1 || 1e9) || a.id.localeCompare(b.id));
  const xs = buildings.map((b) => Number(b.map?.x) || 0), ys = buildings.map((b) => Number(b.map?.y) || 0);
  const placed = buildings.length > 1 && (new Set(xs).size > 1 || new Set(ys).size > 1);
  const boxes = new Map();
  if (placed) {  // metres to pixels, one scale for both axes so the compound keeps its shape
    const minX = Math.min(...xs), minY = Math.min(...ys);
    const spanX = Math.max(...xs) - minX || 1, spanY = Math.max(...ys) - minY || 1;
    const scale = Math.min((MAX_W - 2 * MARGIN - BOX_W) / spanX, (MAX_W - 2 * MARGIN - BOX_H) / spanY, 4);
    buildings.forEach((b, i) => boxes.set(b.id, { x: MARGIN + (xs[i] - minX) * scale, y: MARGIN + 28 + (ys[i] - minY) * scale }));
  } else {
    const cols = Math.max(1, Math.min(4, Math.ceil(Math.sqrt(buildings.length))));
    buildings.forEach((b, i) =>
      boxes.set(b.id, { x: MARGIN + (i % cols) * CELL_W, y: MARGIN + 28 + Math.floor(i / cols) * CELL_H }));
  }
  const outlines = grids.map((g, index) => {
    const inside = (g.members || []).map((m) => boxes.get(m)).filter(Boolean);
    if (!inside.length) return null;
    const x = Math.min(...inside.map((p) => p.x)) - 12, y = Math.min(...inside.map((p) => p.y)) - 38;
    const w = Math.max(...inside.map((p) => p.x + BOX_W)) + 12 - x, h = Math.max(...inside.map((p) => p.y + BOX_H)) + 28 - y;
    return { grid: g, index, x, y, w, h };
  }).filter(Boolean);
  let width = MARGIN * 2, height = MARGIN * 2;
  for (const p of boxes.values()) {
    width = Math.max(width, p.x + BOX_W + MARGIN);
    height = Math.max(height, p.y + BOX_H + MARGIN + 18);
  }
  return { buildings, boxes, outlines, width, height };
}

// The building an alert happened in: the one dispatch named, else the one listing its unit or device.
export function buildingOf(alert, buildings) {
  if (alert.building && buildings.some((b) => b.id === alert.building)) return alert.building;
  const hit = buildings.find((b) => Array.isArray(b.members) &&
    ((alert.unit && b.members.includes(alert.unit)) || (alert.device && b.members.includes(alert.device))));
  return hit ? hit.id : "";
}

function incidentMark(a, x, y, t, selected) {
  const label = `${t.code("rule", a.rule)} · ${t.code("severity", a.severity)} · ${t.code("state", a.state)}` +
    (a.unit ? ` · ${a.unit}` : "");
  return `<g class="incident sev-${classToken(a.severity)}${a.id === selected ? " selected" : ""}" data-alert-id="${esc(a.id)}"
      data-rule="${esc(a.rule)}" data-state="${esc(a.state)}" tabindex="0" role="button" aria-label="${esc(label)}">
    <circle class="hit" cx="${x}" cy="${y}" r="17"></circle><circle class="dot" cx="${x}" cy="${y}" r="10"></circle>
    <text x="${x}" y="${y + 4}" text-anchor="middle">${a.state === "acknowledged" ? "✓" : "!"}</text><title>${esc(label)}</title></g>`;
}

const MARKS_PER_BUILDING = 8, MARKS_PER_GATE = 3, MARKS_ELSEWHERE = 32;
const GATE_W = 124, GATE_H = 40;

// "+N" beside marks not drawn: the most severe are shown, the rest counted (the list has them all).
const more = (n, x, y) => (n > 0 ? `<text class="more" x="${x}" y="${y}">+${n}</text>` : "");

// SVG for the map: { viewBox, markup }.
// site: site records; alerts: active alerts; gates: [[device, gate record]]; t: the translator.
export function drawSiteMap({ site, alerts, gates, t, selected = "" }) {
  const { buildings, boxes, outlines, width, height: drawnHeight } = layoutSite(site);
  let out = "";
  for (const o of outlines) {
    out += `<g class="grid-outline grid-${o.index % 4}" data-grid="${esc(o.grid.id)}">
      <rect x="${o.x}" y="${o.y}" width="${o.w}" height="${o.h}" rx="10"></rect>
      <text x="${o.x + 8}" y="${o.y + 13}">${esc(o.grid.label || o.grid.id)}</text></g>`;
  }
  // Gates a building lists are drawn on it; gates only a grid lists, in a row of their own.
  const gateRecord = new Map(gates);
  const onBuilding = new Set(buildings.flatMap((b) => (Array.isArray(b.members) ? b.members : []).filter((m) => gateRecord.has(m))));
  const gridGates = [...new Set(site.filter((e) => e && e.kind === "grid" && !e.removed && Array.isArray(e.members))
    .flatMap((g) => g.members).filter((m) => gateRecord.has(m) && !onBuilding.has(m)))].sort();
  const at = new Map(), elsewhere = [];  // place -> its alerts, most severe first
  const ranked = [...alerts].sort((a, b) => (SEVERITY_RANK[a.severity] ?? 9) - (SEVERITY_RANK[b.severity] ?? 9) || a.id.localeCompare(b.id));
  for (const a of ranked) {
    const b = buildingOf(a, buildings);
    const place = b || (gridGates.includes(a.device) ? "gate:" + a.device : "");
    if (place) at.set(place, [...(at.get(place) || []), a]);
    else elsewhere.push(a);
  }
  const gateTag = (id, g, x, y) => `<g class="gate" data-gate="${esc(id)}"><rect x="${x}" y="${y}" width="44" height="13" rx="3"></rect>
      <text x="${x + 22}" y="${y + 10}" text-anchor="middle">↔ ${Number(g.passes) || 0}</text>
      <title>${esc(g.location || id)}: ${esc(t("map.passes", { n: Number(g.passes) || 0 }))}</title></g>`;
  for (const b of buildings) {
    const p = boxes.get(b.id);
    const floors = Number(b.floors) || 0;
    let stripes = "";
    for (let f = 1; f < Math.min(floors, 30); f++) {
      const y = p.y + BOX_H - (f * BOX_H) / Math.min(floors, 30);
      stripes += `<line class="floor" x1="${p.x}" x2="${p.x + BOX_W}" y1="${y}" y2="${y}"></line>`;
    }
    out += `<g class="building" data-building="${esc(b.id)}"><rect x="${p.x}" y="${p.y}" width="${BOX_W}" height="${BOX_H}" rx="4"></rect>${stripes}
      <text class="label" x="${p.x + BOX_W / 2}" y="${p.y + BOX_H + 14}" text-anchor="middle">${esc(b.label || b.id)}</text></g>`;
    // Its gates (doors it lists that report passes), as small tags along its top.
    const own = (Array.isArray(b.members) ? b.members : []).filter((m) => gateRecord.has(m)).slice(0, 2);
    own.forEach((m, i) => { out += gateTag(m, gateRecord.get(m), p.x + i * 48, p.y - 15); });
    // Four to a row, a row lower for each four more, at most eight; the most severe drawn last, so on top.
    const here = at.get(b.id) || [];
    const marks = here.slice(0, MARKS_PER_BUILDING).map((a, i) => {
      const floor = floorOf(a.unit, floors);
      const y = (floor && floors ? p.y + BOX_H - ((floor - 0.5) * BOX_H) / floors : p.y + BOX_H / 2) + Math.floor(i / 4) * 22;
      return incidentMark(a, p.x + 15 + (i % 4) * 24, Math.max(p.y + 12, Math.min(p.y + BOX_H - 12, y)), t, selected);
    });
    out += marks.reverse().join("") + more(here.length - MARKS_PER_BUILDING, p.x + BOX_W - 18, p.y + BOX_H - 4);
  }
  let height = drawnHeight;
  if (gridGates.length) {  // a row of the gates only grids list, each with its own incidents
    const perRow = Math.max(1, Math.floor((Math.max(width, 200) - 2 * MARGIN) / (GATE_W + 8)));
    gridGates.forEach((id, i) => {
      const x = MARGIN + (i % perRow) * (GATE_W + 8), y = height + Math.floor(i / perRow) * (GATE_H + 10);
      const g = gateRecord.get(id);
      const label = String(g.location || id);
      out += `<g class="gate gate-row" data-gate="${esc(id)}"><rect x="${x}" y="${y}" width="${GATE_W}" height="${GATE_H}" rx="4"></rect>
        <text x="${x + 4}" y="${y + 11}">${esc(label.length > 16 ? label.slice(0, 15) + "…" : label)}</text>
        <text x="${x + GATE_W - 4}" y="${y + 11}" text-anchor="end">↔ ${Number(g.passes) || 0}</text>
        <title>${esc(label)}: ${esc(t("map.passes", { n: Number(g.passes) || 0 }))}</title></g>`;
      const here = at.get("gate:" + id) || [];
      out += here.slice(0, MARKS_PER_GATE).map((a, k) => incidentMark(a, x + 14 + k * 24, y + 27, t, selected)).reverse().join("") +
        more(here.length - MARKS_PER_GATE, x + 14 + MARKS_PER_GATE * 24 - 8, y + 31);
    });
    height += Math.ceil(gridGates.length / perRow) * (GATE_H + 10) + 6;
  }
  if (elsewhere.length) {
    const y = height + 4;
    out += `<text class="label" x="${MARGIN}" y="${y}">${esc(t("map.elsewhere"))}</text>`;
    const shown = elsewhere.slice(0, MARKS_ELSEWHERE);
    out += shown.map((a, i) => incidentMark(a, MARGIN + 14 + (i % 16) * 30, y + 22 + Math.floor(i / 16) * 30, t, selected))
      .reverse().join("");
    const rows = Math.ceil(shown.length / 16);
    out += more(elsewhere.length - shown.length, MARGIN, y + 22 + rows * 30);
    height = y + 22 + rows * 30 + (elsewhere.length > shown.length ? 14 : 0);
  }
  if (!buildings.length && !elsewhere.length && !gridGates.length) {
    return { viewBox: `0 0 ${MAX_W} 60`, markup: `<text x="${MARGIN}" y="34">${esc(t("map.empty"))}</text>` };
  }
  return { viewBox: `0 0 ${Math.max(width, 200)} ${height}`, markup: out };
}
