// The dashboard in a real browser (Debian's Chromium, driven by playwright-core):
// - on a desktop in English: a fever at a gate must appear on the open page as a new alert within a
//   second of the gate's publish, and acknowledging it from the page must change its state; a fall
//   from an elder's wearable must show whom to call: her daughter's name and number, and "erased"
//   for her forgotten son; and who has it (the grid's worker on duty);
// - on a 390-pixel phone whose browser asks for Chinese, in New York's time zone: the page speaks
//   Chinese with times on the compound's clock (UTC+8), nothing is wider than the screen, the fall
//   is a mark on its building in the site map; tapping it opens its card (where, who, what so far,
//   whom to call), and acknowledging and "on my way" from the card change its state on the map;
//   the language switch turns the page to English;
// - the elder's household, on its own phone: no site map, the fall without the staff member's
//   token, and what its family was told.
// Run by tests/integration/dashboard_test.cpp,
// which starts the services, the hub and ingest, and passes everything in the environment:
//   COURTYARD_URL, COURTYARD_TOKEN, RESIDENT_TOKEN, COURTYARD_COMMUNITY, MQTT_PORT, GATE_ID,
//   GATE_PASSWORD, WEARABLE_ID, WEARABLE_PASSWORD, STAFF_ON_DUTY, UTC_OFFSET_MINUTES, SCREENSHOT
// Prints one JSON line with what it measured; exits non-zero, saying why, when a check fails.
import { execFileSync } from "node:child_process";
import { chromium } from "playwright-core";

const env = (name) => {
  if (!process.env[name]) throw new Error(`${name} is not set`);
  return process.env[name];
};

const url = env("COURTYARD_URL"), token = env("COURTYARD_TOKEN"), community = env("COURTYARD_COMMUNITY");
const gate = env("GATE_ID"), password = env("GATE_PASSWORD"), mqttPort = env("MQTT_PORT");
const screenshot = env("SCREENSHOT");

const wearable = env("WEARABLE_ID"), wearablePassword = env("WEARABLE_PASSWORD");
const residentToken = env("RESIDENT_TOKEN"), onDuty = env("STAFF_ON_DUTY"), offset = Number(env("UTC_OFFSET_MINUTES"));

// The compound's clock, computed here independently of the page: HH:MM for a time in ms.
function compoundClock(ms) {
  const d = new Date(ms + offset * 60000), two = (n) => String(n).padStart(2, "0");
  return `${two(d.getUTCMonth() + 1)}-${two(d.getUTCDate())} ${two(d.getUTCHours())}:${two(d.getUTCMinutes())}`;
}

function publish(device, secret, message) {
  const payload = JSON.stringify({ seq: 1, boot: 1, ts: Date.now(), ...message });
  execFileSync("mosquitto_pub", ["-h", "127.0.0.1", "-p", mqttPort, "-V", "mqttv5", "-q", "1", "-i", device, "-u", device,
    "-P", secret, "-t", `courtyard/v1/${community}/${device}/telemetry`, "-m", payload]);
}

function publishFever() {
  publish(gate, password, {
    type: "gate.pass",
    body: { credential: "face", subject: "subj-browser-1", direction: "in", decision: "granted", temperature_c: 38.9 },
  });
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
let failure = null;
const result = {};
const page = await browser.newPage({ viewport: { width: 1280, height: 1000 }, locale: "en-US" });
page.on("pageerror", (e) => { failure ??= `page error: ${e.message}`; });
const phoneScreenshot = screenshot.replace(/\.png$/, "-phone.png");
try {
  await page.goto(`${url}/#token=${token}`);
  await page.waitForSelector('#link[data-state="live"]', { timeout: 15000 });
  if (await page.locator("#alerts tr[data-rule='fever']").count() !== 0) throw new Error("a fever alert is on the board before any fever");

  const published = Date.now();
  publishFever();
  const row = page.locator("#alerts tr[data-rule='fever']");
  await row.waitFor({ timeout: 10000 });
  result.fever_to_page_ms = Date.now() - published;
  result.location = (await row.locator("td").nth(2).textContent()).trim();
  result.state_before = await row.getAttribute("data-state");
  if (result.fever_to_page_ms > 1000) throw new Error(`the fever took ${result.fever_to_page_ms} ms to reach the page (more than a second)`);

  const clicked = Date.now();
  await row.locator("button[data-action='ack']").click();
  await page.waitForFunction(
    () => document.querySelector("#alerts tr[data-rule='fever'] .state")?.textContent === "acknowledged", null, { timeout: 10000 });
  if (await row.getAttribute("data-state") !== "acknowledged") throw new Error("the fever's row does not say acknowledged");
  result.ack_to_page_ms = Date.now() - clicked;
  result.state_after = "acknowledged";

  publish(wearable, wearablePassword, { type: "wearable.alarm", body: { kind: "fall" } });
  const fall = page.locator("#alerts tr[data-rule='fall']");
  await fall.waitFor({ timeout: 10000 });
  await fall.locator("button[data-contacts]").click();
  await page.waitForSelector("#contacts-dialog[open] li", { timeout: 10000 });
  const card = await page.locator("#contacts-list").innerText();
  result.contacts = card;
  for (const expected of ["Li Lan", "Wang Mei", "daughter", "+86 138 0013 8000", "erased"]) {
    if (!card.includes(expected)) throw new Error(`the fall's contacts do not show "${expected}": ${card}`);
  }
  if (card.includes("Wang Lei")) throw new Error(`the forgotten son's name is on the card: ${card}`);
  await page.waitForFunction((who) => document.querySelector("#alerts tr[data-rule='fall'] .assignee")?.textContent.includes(who),
                             onDuty, { timeout: 10000 });
  result.fall_assignee = (await fall.locator(".assignee").textContent()).trim();
  if (!result.fall_assignee.includes("grid worker")) throw new Error(`the fall's responder is not the grid worker: ${result.fall_assignee}`);
  await page.screenshot({ path: screenshot, fullPage: true });
  await page.close();

  // A responder's phone, asking for Chinese, in a time zone far from the compound's.
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true,
                                           hasTouch: true, locale: "zh-CN", timezoneId: "America/New_York" });
  const mobile = await phone.newPage();
  mobile.on("pageerror", (e) => { failure ??= `phone page error: ${e.message}`; });
  await mobile.goto(`${url}/#token=${token}`);
  await mobile.waitForSelector('#link[data-state="live"]', { timeout: 15000 });
  result.phone_lang = await mobile.evaluate(() => document.documentElement.lang);
  result.phone_alerts_title = (await mobile.locator("#alerts-title").textContent()).trim();
  if (result.phone_lang !== "zh-CN" || result.phone_alerts_title !== "告警") {
    throw new Error(`the phone asked for Chinese and got lang=${result.phone_lang}, title "${result.phone_alerts_title}"`);
  }
  const mark = mobile.locator("#sitemap .incident[data-rule='fall']");
  await mark.waitFor({ timeout: 10000 });
  // On its building: the mark's centre inside the building's box.
  const building = await mobile.locator("#sitemap [data-building='b1'] rect").first().boundingBox();
  const dot = await mark.locator(".dot").boundingBox();
  const cx = dot.x + dot.width / 2, cy = dot.y + dot.height / 2;
  if (!(cx > building.x && cx < building.x + building.width && cy > building.y && cy < building.y + building.height)) {
    throw new Error(`the fall's mark (${cx}, ${cy}) is not on building b1 (${JSON.stringify(building)})`);
  }
  // Hostile labels (building b2, grid-b) are shown as text, never run or parsed as markup.
  const hostile = await mobile.evaluate(() => ({
    ran: window.__xss ?? null, injected: document.querySelectorAll("#sitemap img, #sitemap script").length,
    shown: document.querySelector("#sitemap [data-building='b2'] .label")?.textContent ?? "",
  }));
  if (hostile.ran !== null || hostile.injected || !hostile.shown.startsWith("<img src=x")) {
    throw new Error(`a hostile site label was not shown as text: ${JSON.stringify(hostile)}`);
  }
  result.phone_width = await mobile.evaluate(() => document.documentElement.scrollWidth);
  if (result.phone_width > 390) throw new Error(`the page is ${result.phone_width} px wide on a 390-px phone`);
  // Under load the board redraws many times a second: a redraw between finger down and up must not lose the tap.
  const survived = await mobile.evaluate(() => {
    const svg = document.getElementById("sitemap");
    svg.querySelector(".incident[data-rule='fall'] .dot").dispatchEvent(new PointerEvent("pointerdown", { bubbles: true }));
    svg.innerHTML = svg.innerHTML;  // the map redrawn under the finger
    svg.dispatchEvent(new MouseEvent("click", { bubbles: true }));
    const open = document.getElementById("incident").open;
    document.getElementById("incident").close();
    return open;
  });
  if (!survived) throw new Error("a tap on the map that a redraw replaced did not open the card");
  await mark.tap();
  const incident = mobile.locator("#incident[open]");
  await incident.waitFor({ timeout: 5000 });
  result.card = (await incident.innerText()).replace(/\s+/g, " ");
  for (const expected of ["跌倒", "1号楼", "北区", "b1-101", "网格员", onDuty, "派单"]) {
    if (!result.card.includes(expected)) throw new Error(`the fall's card does not show "${expected}": ${result.card}`);
  }
  // Its time on the compound's clock, not New York's.
  const opened = incident.locator(".opened [data-ms]");
  const openedMs = Number(await opened.getAttribute("data-ms"));
  result.opened_shown = (await opened.textContent()).trim();
  if (result.opened_shown !== compoundClock(openedMs)) {
    throw new Error(`the card shows ${result.opened_shown} for ${openedMs}; the compound's clock says ${compoundClock(openedMs)}`);
  }
  for (const box of await incident.locator(".actions button").evaluateAll((bs) => bs.map((b) => b.getBoundingClientRect().height))) {
    if (box < 32) throw new Error(`a button of the card is ${box} px high: too small for a thumb`);
  }
  await incident.locator("button[data-contacts]").tap();
  await mobile.waitForSelector("#contacts-dialog[open] li", { timeout: 10000 });
  if (!(await mobile.locator("#contacts-list").innerText()).includes("Wang Mei")) throw new Error("the card's contacts miss the daughter");
  await mobile.locator("#contacts-dialog button").tap();
  const tapped = Date.now();
  await incident.locator("button[data-action='ack']").tap();
  await mobile.waitForSelector("#sitemap .incident[data-rule='fall'][data-state='acknowledged']", { timeout: 10000 });
  result.map_ack_ms = Date.now() - tapped;
  result.card_state = (await incident.locator(".state").textContent()).trim();
  if (result.card_state !== "已确认") throw new Error(`the card says "${result.card_state}" after acknowledging`);
  await incident.locator("button[data-action='on_my_way']").tap();
  await mobile.waitForFunction(() => document.querySelector("#incident .chain li[data-what='on_my_way']"), null, { timeout: 10000 });
  await mobile.screenshot({ path: phoneScreenshot, fullPage: true });
  await incident.locator("form button").tap();
  await mobile.selectOption("#lang", "en");
  result.switched_title = (await mobile.locator("#alerts-title").textContent()).trim();
  if (result.switched_title !== "Alerts") throw new Error(`after switching to English the title says "${result.switched_title}"`);
  await phone.close();

  // The elder's household on its own phone: what it is shown of the same fall.
  const home = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, locale: "en-US" });
  const household = await home.newPage();
  household.on("pageerror", (e) => { failure ??= `household page error: ${e.message}`; });
  await household.goto(`${url}/#token=${residentToken}`);
  await household.waitForSelector("#alerts tr[data-rule='fall']", { timeout: 15000 });
  if (await household.locator("#map-section").isVisible()) throw new Error("a household is shown the compound's map");
  const board = await household.locator("main").innerText();
  if (board.includes(onDuty)) throw new Error(`the household is shown the staff member's token: ${board}`);
  await household.waitForSelector("#notifications li[data-to='family'][data-what='staff_assigned']", { timeout: 10000 });
  result.household_told = await household.locator("#notifications li[data-to='family']").count();
  if (await household.locator("#notifications li[data-to='staff']").count()) throw new Error("a household is shown what staff were told");
  await home.close();
} catch (e) {
  failure ??= e.message;
  await page.screenshot({ path: screenshot, fullPage: true }).catch(() => {});
} finally {
  await browser.close();
}
console.log(JSON.stringify({ ...result, failure }));
process.exit(failure ? 1 : 0);
