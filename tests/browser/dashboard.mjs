// The dashboard in a real browser (Debian's Chromium, driven by playwright-core): a fever at a
// gate must appear on the open page as a new alert within a second of the gate's publish, and
// acknowledging it from the page must change its state; a fall from an elder's wearable must show,
// on its card, whom to call: her daughter's name and number, and "erased" for her forgotten son.
// Run by tests/integration/dashboard_test.cpp,
// which starts the services, the hub and ingest, and passes everything in the environment:
//   COURTYARD_URL, COURTYARD_TOKEN, COURTYARD_COMMUNITY, MQTT_PORT, GATE_ID, GATE_PASSWORD,
//   WEARABLE_ID, WEARABLE_PASSWORD, SCREENSHOT
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
const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
page.on("pageerror", (e) => { failure ??= `page error: ${e.message}`; });
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
  result.state_before = (await row.locator(".state").textContent()).trim();
  if (result.fever_to_page_ms > 1000) throw new Error(`the fever took ${result.fever_to_page_ms} ms to reach the page (more than a second)`);

  const clicked = Date.now();
  await row.locator("button[data-action='ack']").click();
  await page.waitForFunction(
    () => document.querySelector("#alerts tr[data-rule='fever'] .state")?.textContent === "acknowledged", null, { timeout: 10000 });
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
  await page.screenshot({ path: screenshot, fullPage: true });
} catch (e) {
  failure ??= e.message;
  await page.screenshot({ path: screenshot, fullPage: true }).catch(() => {});
} finally {
  await browser.close();
}
console.log(JSON.stringify({ ...result, failure }));
process.exit(failure ? 1 : 0);
