// The dashboard and /docs in a real browser (Debian's chromium via playwright-core), against the
// real etp-local binary on a free port. Screenshots go to target/browser-artifacts/.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, existsSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");
const BIN = process.env.ETP_BIN || join(root, "target/debug/etp-local");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const ARTIFACTS = join(root, "target/browser-artifacts");
const TOKEN = "browser-test-token-0123456789";
const TIMEOUT = 20_000;

let server;
let serverLog = "";
let base;
let context;
let page;
let shot = 0;
const dirs = [];
const problems = [];
const urls = [];

function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once("error", fail);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

async function waitHealthy(url, deadline) {
  while (Date.now() < deadline) {
    try {
      if ((await fetch(`${url}/health`)).ok) return;
    } catch { /* not listening yet */ }
    if (server.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`etp-local did not become healthy:\n${serverLog}`);
}

async function screenshot(name) {
  shot += 1;
  await page.screenshot({ path: join(ARTIFACTS, `${String(shot).padStart(2, "0")}-${name}.png`), fullPage: true });
}

const row = (table, text) => page.locator(`#${table} tbody tr`, { hasText: text });

before(async () => {
  assert.ok(existsSync(BIN), `build the server first (cargo build -p local): ${BIN} is missing`);
  assert.ok(existsSync(CHROMIUM), `install chromium first: ${CHROMIUM} is missing`);
  mkdirSync(ARTIFACTS, { recursive: true });
  const data = mkdtempSync(join(tmpdir(), "etp-browser-data-"));
  const profile = mkdtempSync(join(tmpdir(), "etp-browser-profile-"));
  dirs.push(data, profile);
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  server = spawn(BIN, [], {
    env: { ...process.env, ETP_LISTEN: `127.0.0.1:${port}`, ETP_DATA_DIR: data, ETP_API_TOKEN: TOKEN, RUST_LOG: "warn",
      // The repair tests deliver to a closed port on loopback, so their deliveries fail.
      ETP_ALLOW_PRIVATE_TARGETS: "127.0.0.1/32" },
    stdio: ["ignore", "ignore", "pipe"],
  });
  server.stderr.on("data", (d) => { serverLog += d; });
  await waitHealthy(base, Date.now() + 30_000);

  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    viewport: { width: 1280, height: 900 },
    timezoneId: "UTC",
  });
  context.setDefaultTimeout(TIMEOUT);
  page = context.pages()[0] || await context.newPage();
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    // Error statuses the test provokes on purpose are logged by the browser as failed loads.
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) problems.push(m.text());
  });
  page.on("request", (r) => urls.push(r.url()));
  // Everything must come from this server: no CDN, nothing from the internet.
  await context.route((url) => !url.href.startsWith(base), (route) => {
    problems.push(`request outside the server: ${route.request().url()}`);
    return route.abort();
  });
});

after(async () => {
  await context?.close();
  server?.kill("SIGKILL");
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe("dashboard", () => {
  it("asks for the token once and keeps it in the session only", async () => {
    await page.goto(base);
    await page.getByLabel("API token").waitFor();
    // Even without the script, submitting the form could not put the token in a URL.
    assert.deepEqual(
      await page.evaluate(() => [document.getElementById("login-form").method,
                                 document.getElementById("token").hasAttribute("name")]),
      ["post", false]);
    await screenshot("sign-in");
    await page.getByLabel("API token").fill(TOKEN);
    await page.getByRole("button", { name: "Use token" }).click();
    await page.getByRole("heading", { name: "Triggers" }).waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.getItem("etp.token")), TOKEN);
    assert.equal(await page.evaluate(() => localStorage.length), 0);
    await page.reload();
    await page.getByRole("heading", { name: "Triggers" }).waitFor();
    assert.ok(await page.getByLabel("API token").isHidden(), "asked for the token again");
  });

  it("creates an interval trigger and shows its first event without reloading", async () => {
    await page.getByRole("button", { name: "New trigger" }).click();
    const dialog = page.locator("#trigger-dialog");
    await dialog.getByLabel("Name", { exact: true }).fill("heartbeat");
    await dialog.getByLabel("Schedule", { exact: true }).selectOption("interval");
    await dialog.getByLabel("Every", { exact: true }).fill("2");
    await dialog.getByLabel("Unit", { exact: true }).selectOption({ label: "seconds" });
    await screenshot("create-interval");
    await dialog.getByRole("button", { name: "Create" }).click();
    await dialog.waitFor({ state: "hidden" });
    const trigger = row("trigger-table", "heartbeat");
    await trigger.getByText("every 2 s").waitFor();
    await trigger.getByText("active").waitFor();
    const navigations = urls.filter((u) => u === `${base}/`).length;
    await row("event-table", "heartbeat").first().waitFor();
    assert.equal(urls.filter((u) => u === `${base}/`).length, navigations, "the page reloaded");
    await row("event-table", "heartbeat").first().getByText(/archived in/).waitFor();
    await screenshot("interval-event");
  });

  it("pauses the trigger", async () => {
    await page.getByRole("button", { name: "Pause heartbeat" }).click();
    await row("trigger-table", "heartbeat").getByText("paused", { exact: true }).waitFor();
    await page.getByRole("button", { name: "Resume heartbeat" }).waitFor();
  });

  it("edits the trigger and test-fires it", async () => {
    await page.getByRole("button", { name: "Edit heartbeat" }).click();
    const dialog = page.locator("#trigger-dialog");
    assert.equal(await dialog.getByLabel("Every", { exact: true }).inputValue(), "2");
    await dialog.getByLabel("Every", { exact: true }).fill("3");
    await dialog.getByRole("button", { name: "Save" }).click();
    await dialog.waitFor({ state: "hidden" });
    await row("trigger-table", "heartbeat").getByText("every 3 s").waitFor();
    await page.getByRole("button", { name: "Test heartbeat" }).click();
    await row("event-table", "heartbeat").filter({ hasText: "manual_test" }).first().waitFor();
  });

  it("creates a cron trigger and shows its schedule in words", async () => {
    await page.getByRole("button", { name: "New trigger" }).click();
    const dialog = page.locator("#trigger-dialog");
    await dialog.getByLabel("Name", { exact: true }).fill("standup");
    await dialog.getByLabel("Schedule", { exact: true }).selectOption("cron");
    await dialog.getByLabel("Cron expression").fill("0 9 * * MON-FRI");
    await dialog.getByLabel("Time zone").fill("Europe/Berlin");
    await dialog.getByRole("button", { name: "Create" }).click();
    await dialog.waitFor({ state: "hidden" });
    await row("trigger-table", "standup").getByText("cron 0 9 * * MON-FRI Europe/Berlin").waitFor();
  });

  it("creates an api trigger with a schema, with feedback while typing", async () => {
    await page.getByRole("button", { name: "New trigger" }).click();
    const dialog = page.locator("#trigger-dialog");
    await dialog.getByLabel("Name", { exact: true }).fill("order placed");
    await dialog.getByLabel("API (fired by clients)").check();
    const schema = dialog.getByLabel("Payload schema (JSON Schema)");
    await schema.fill('{"type": "object",');
    await dialog.getByText(/Not valid JSON/).waitFor();
    await schema.fill(JSON.stringify({ type: "nope" }));
    await dialog.getByRole("button", { name: "Create" }).click();
    // The API's verdict sits next to the field.
    await dialog.locator('[data-field="payload_schema"] .field-error').getByText(/not a valid JSON Schema/).waitFor();
    assert.equal(await schema.getAttribute("aria-invalid"), "true");
    await screenshot("schema-error");
    await schema.fill(JSON.stringify({ type: "object", required: ["order_id"],
      properties: { order_id: { type: "integer" } } }, null, 2));
    await dialog.getByText(/Valid JSON/).waitFor();
    await dialog.getByRole("button", { name: "Create" }).click();
    await dialog.waitFor({ state: "hidden" });
    await row("trigger-table", "order placed").getByText("fired through the API").waitFor();
  });

  it("fires it with an invalid payload (error at the field), then a valid one (an event)", async () => {
    await page.getByRole("button", { name: "Fire order placed" }).click();
    const dialog = page.locator("#fire-dialog");
    const payload = dialog.getByLabel("Payload (JSON)");
    await payload.fill('{"order_id": "forty-two"}');
    await dialog.getByRole("button", { name: "Fire", exact: true }).click();
    const fieldError = dialog.locator('[data-field="payload"] .field-error');
    await fieldError.getByText(/\/order_id/).waitFor();
    await dialog.getByRole("alert").getByText(/does not match/).waitFor();
    assert.equal(await payload.getAttribute("aria-invalid"), "true");
    await screenshot("fire-invalid");
    await payload.fill('{"order_id": 42}');
    await dialog.getByRole("button", { name: "Fire", exact: true }).click();
    await dialog.waitFor({ state: "hidden" });
    await row("event-table", "order placed").first().getByText("api").waitFor();
    await screenshot("fire-valid");
  });

  it("dry-runs a payload: the would-be event is shown and nothing is stored", async () => {
    const before = await row("event-table", "order placed").count();
    await page.getByRole("button", { name: "Fire order placed" }).click();
    const dialog = page.locator("#fire-dialog");
    await dialog.getByLabel("Payload (JSON)").fill('{"order_id": 7}');
    await dialog.getByRole("button", { name: "Dry run" }).click();
    await dialog.locator("#fire-preview-event").getByText('"order_id": 7').waitFor();
    await screenshot("fire-dry-run");
    await dialog.getByRole("button", { name: "Cancel" }).click();
    await dialog.waitFor({ state: "hidden" });
    const { items } = await (await fetch(`${base}/events?limit=200`, { headers: { Authorization: `Bearer ${TOKEN}` } })).json();
    assert.ok(!items.some((e) => e.payload?.order_id === 7), "a dry run stored an event");
    assert.equal(await row("event-table", "order placed").count(), before);
  });

  it("audits a schedule's occurrences, skips one and pauses until a time (desktop and 375 px)", async () => {
    await page.getByRole("button", { name: "New trigger" }).click();
    const form = page.locator("#trigger-dialog");
    await form.getByLabel("Name", { exact: true }).fill("hourly report");
    await form.getByLabel("Schedule", { exact: true }).selectOption("interval");
    await form.getByLabel("Every", { exact: true }).fill("1");
    await form.getByLabel("Unit", { exact: true }).selectOption({ label: "hours" });
    await form.getByRole("button", { name: "Create" }).click();
    await form.waitFor({ state: "hidden" });
    await page.getByRole("button", { name: "Occurrences hourly report" }).click();
    const dialog = page.locator("#occurrences-dialog");
    const rows = dialog.locator("#occurrence-rows tr");
    await rows.first().getByText("upcoming").waitFor();
    assert.equal(await rows.count(), 24, "one row per hour of the next day");
    const first = await rows.nth(0).getAttribute("data-at");
    await rows.nth(0).getByRole("button", { name: /^Skip/ }).click();
    await dialog.locator(`tr[data-at="${first}"]`).getByText("skipped by hand").waitFor();
    // Paused until just after the third occurrence: the second and third are skipped as paused.
    const third = Date.parse(await rows.nth(2).getAttribute("data-at"));
    const until = new Date(third + 1000).toISOString().slice(0, 19);
    await dialog.getByLabel("Pause until").fill(until);
    await dialog.getByRole("button", { name: "Pause until then" }).click();
    await rows.nth(1).getByText("paused").waitFor();
    await rows.nth(2).getByText("paused").waitFor();
    await rows.nth(3).getByText("upcoming").waitFor();
    await screenshot("occurrences");
    await page.setViewportSize({ width: 375, height: 800 });
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= 375, `page is ${width}px wide`);
    await screenshot("occurrences-mobile");
    await page.setViewportSize({ width: 1280, height: 900 });
    await dialog.getByRole("button", { name: "Close" }).click();
    await dialog.waitFor({ state: "hidden" });
    const trigger = row("trigger-table", "hourly report");
    await trigger.getByText("paused", { exact: true }).waitFor();
    await trigger.getByText(/^until /).waitFor();
  });

  it("opens an event's detail with its payload and lifecycle", async () => {
    await row("event-table", "order placed").first().getByRole("button", { name: /Details/ }).click();
    const dialog = page.locator("#event-dialog");
    await dialog.getByText('"order_id": 42').waitFor();
    await dialog.getByText("Archived at").waitFor();
    await screenshot("event-detail");
    await dialog.getByRole("button", { name: "Close" }).click();
    await dialog.waitFor({ state: "hidden" });
  });

  it("filters events and switches to the archived tab with the keyboard", async () => {
    await page.getByLabel("Source").selectOption("api");
    await page.waitForFunction(() => [...document.querySelectorAll("#event-rows tr")]
      .every((r) => r.textContent.includes("order placed")));
    await page.getByLabel("Source").selectOption("");
    await page.getByRole("tab", { name: "Active" }).focus();
    await page.keyboard.press("ArrowRight");
    assert.equal(await page.getByRole("tab", { name: "Archived" }).getAttribute("aria-selected"), "true");
    await page.getByText("No events here.").waitFor();
    await page.getByRole("tab", { name: "Archived" }).press("ArrowLeft");
    await row("event-table", "heartbeat").first().waitFor();
  });

  it("draws the stats chart", async () => {
    // Stats are cached for a few seconds and polled, so the api event shows up shortly.
    await page.waitForFunction(() => /order placed: 1 active/.test(
      document.querySelector("#stats-chart svg[role=img]")?.getAttribute("aria-label") ?? ""));
    assert.ok(await page.locator("#stats-chart rect.bar-active").count() >= 2);
  });

  it("shows the metrics, at desktop width and at 375 px", async () => {
    const figures = () => page.evaluate(() => Object.fromEntries(
      [...document.querySelectorAll("#metrics-view div")]
        .map((d) => [d.querySelector("dt").textContent, d.querySelector("dd").textContent])));
    // The heartbeat's firings, its test-fire and the api firing; none failed, none is late.
    await page.waitForFunction(() => Number([...document.querySelectorAll("#metrics-view div")]
      .find((d) => d.querySelector("dt").textContent === "Firings")?.querySelector("dd").textContent) >= 3);
    const f = await figures();
    assert.equal(f["Firings failed"], "0");
    assert.equal(f["Deliveries failed"], "0");
    assert.match(f["Lateness p50"], /^\d+(\.\d)? m?s$/, JSON.stringify(f));
    assert.match(f["Lateness p99"], /^\d+(\.\d)? m?s$/);
    await page.getByRole("link", { name: "Metrics" }).click();
    await screenshot("metrics");
    await page.setViewportSize({ width: 375, height: 800 });
    const box = await page.locator("#metrics-view").boundingBox();
    assert.ok(box && box.x >= 0 && box.x + box.width <= 375, `metrics at ${JSON.stringify(box)}`);
    assert.ok(await page.evaluate(() => document.documentElement.scrollWidth) <= 375);
    await screenshot("metrics-mobile");
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  it("fits a 375 px wide screen", async () => {
    await page.setViewportSize({ width: 375, height: 800 });
    await page.getByRole("heading", { name: "Triggers" }).waitFor();
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(overflow <= 375, `page is ${overflow}px wide`);
    await screenshot("mobile");
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  it("deletes a trigger after confirmation", async () => {
    await page.getByRole("button", { name: "Delete heartbeat" }).click();
    const confirm = page.locator("#confirm-dialog");
    await confirm.getByText(/past events stay/).waitFor();
    await screenshot("confirm-delete");
    await confirm.getByRole("button", { name: "Delete" }).click();
    await row("trigger-table", "heartbeat").waitFor({ state: "detached" });
  });

  const keys = {};

  async function signInWith(token, heading) {
    await page.getByRole("button", { name: "Forget token" }).click();
    await page.getByLabel("API token").fill(token);
    await page.getByRole("button", { name: "Use token" }).click();
    await page.getByRole("heading", { name: heading }).waitFor();
  }

  async function fits375(name) {
    await page.setViewportSize({ width: 375, height: 800 });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(overflow <= 375, `page is ${overflow}px wide`);
    await screenshot(name);
    await page.setViewportSize({ width: 1280, height: 900 });
  }

  async function createKey(name, scopes, triggerIds = "") {
    await page.getByRole("button", { name: "New API key" }).click();
    const dialog = page.locator("#key-dialog");
    await dialog.getByLabel("Key name").fill(name);
    for (const box of await dialog.locator("input[name=scope]").all()) {
      await box.setChecked(scopes.includes(await box.getAttribute("value")));
    }
    if (triggerIds) await dialog.getByLabel(/Fire only these trigger ids/).fill(triggerIds);
    await dialog.getByRole("button", { name: "Create key" }).click();
    await dialog.waitFor({ state: "hidden" });
    const notice = page.locator("#key-notice");
    await notice.getByText(name).waitFor();
    const key = await page.locator("#key-value").textContent();
    assert.match(key, /^etp_[A-Za-z0-9_-]{43}$/);
    return key;
  }

  it("creates API keys in the admin view, each shown once", async () => {
    await page.getByRole("link", { name: "API keys" }).click();
    await page.getByRole("heading", { name: "API keys" }).waitFor();
    // A bad expiry is answered at its field.
    await page.getByRole("button", { name: "New API key" }).click();
    const dialog = page.locator("#key-dialog");
    await dialog.getByLabel("Key name").fill("too late");
    await dialog.getByLabel("Expires (UTC, optional)").fill("2001-01-01T00:00:00");
    await dialog.getByRole("button", { name: "Create key" }).click();
    await dialog.locator('[data-field="expires_at"] .field-error').getByText(/future/).waitFor();
    await screenshot("key-error");
    await dialog.getByRole("button", { name: "Cancel" }).click();

    keys.reader = await createKey("event reader", ["events:read"]);
    await screenshot("key-shown-once");
    await page.getByRole("button", { name: "Done" }).click();
    assert.equal(await page.locator("#key-value").textContent(), "");
    const listed = row("key-table", "event reader");
    await listed.getByText(`${keys.reader.slice(0, 8)}…`).waitFor();
    assert.equal(await listed.getByText(keys.reader).count(), 0, "the key is listed in full");
    const orders = await row("trigger-table", "order placed").getAttribute("data-id");
    keys.firer = await createKey("order firer", ["triggers:read", "fire"], orders);
    await page.getByRole("button", { name: "Done" }).click();
    await row("key-table", "order firer").getByText(/fires 1 trigger/).waitFor();
    await screenshot("keys");
    await fits375("keys-mobile");
  });

  it("shows an events:read key the events only", async () => {
    await signInWith(keys.reader, "Events");
    await page.getByText("Signed in with “event reader”: events:read").waitFor();
    assert.ok(await page.locator("#triggers").isHidden(), "triggers shown without triggers:read");
    assert.ok(await page.getByRole("link", { name: "API keys" }).isHidden());
    assert.ok(await page.getByRole("link", { name: "Triggers" }).isHidden());
    await row("event-table", "order placed").first().waitFor();
    await screenshot("reader");
    await fits375("reader-mobile");
  });

  it("shows a triggers:read + fire key no edit buttons and no events", async () => {
    await signInWith(keys.firer, "Triggers");
    await row("trigger-table", "order placed").waitFor();
    await page.getByRole("button", { name: "Fire order placed" }).waitFor();
    for (const hidden of ["New trigger", "Edit order placed", "Delete order placed", "Test order placed"]) {
      assert.equal(await page.getByRole("button", { name: hidden }).count(), 0, `${hidden} shown`);
    }
    assert.ok(await page.locator("#events").isHidden(), "events shown without events:read");
    await page.getByRole("button", { name: "Fire order placed" }).click();
    const dialog = page.locator("#fire-dialog");
    await dialog.getByLabel("Payload (JSON)").fill('{"order_id": 7}');
    await dialog.getByRole("button", { name: "Fire", exact: true }).click();
    await dialog.waitFor({ state: "hidden" });
    await page.getByText(/Event .* recorded for order placed/).waitFor();
    await screenshot("firer");
    await fits375("firer-mobile");
  });

  it("revokes a key: it is refused at once", async () => {
    await signInWith(TOKEN, "API keys");
    await page.getByRole("button", { name: "Revoke event reader" }).click();
    const confirm = page.locator("#confirm-dialog");
    await confirm.getByText(/refused from now on/).waitFor();
    await confirm.getByRole("button", { name: "Revoke" }).click();
    await row("key-table", "event reader").waitFor({ state: "detached" });
    const res = await fetch(`${base}/events`, { headers: { Authorization: `Bearer ${keys.reader}` } });
    assert.equal(res.status, 401);
    // The confirmation dialog is the trigger one again.
    assert.equal(await page.locator("#confirm-title").textContent(), "Delete trigger?");
  });

  it("never puts the token in a URL and loads nothing from elsewhere", () => {
    for (const key of Object.values(keys)) assert.deepEqual(urls.filter((u) => u.includes(key)), []);
    assert.deepEqual(urls.filter((u) => u.includes(TOKEN)), []);
    assert.deepEqual(problems, []);
  });
});

describe("repairing deliveries", () => {
  const call = async (method, path, body) => {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await res.text();
    assert.ok(res.ok, `${method} ${path}: ${res.status} ${text}`);
    return JSON.parse(text);
  };

  it("shows a failed event with a Redeliver button, filtered by status", async () => {
    const closed = await freePort();
    const t = await call("POST", "/triggers", { name: "flaky hook", kind: "api", payload_schema: {},
      target: { url: `http://127.0.0.1:${closed}/hook`, timeout_ms: 1000, max_attempts: 0,
        pause_after_failures: 1 } });
    await call("POST", `/triggers/${t.id}/fire`, { n: 1 });
    await page.goto(base);
    await page.getByLabel("Status", { exact: true }).selectOption("failure");
    const failed = row("event-table", "flaky hook").first();
    await failed.getByText("failure").waitFor();
    await page.waitForFunction(() => [...document.querySelectorAll("#event-rows tr")]
      .every((r) => r.textContent.includes("failure")));
    await failed.getByRole("button", { name: /Redeliver flaky hook/ }).waitFor();
    await screenshot("failed-event");
  });

  it("shows paused delivery and resumes it", async () => {
    const trigger = row("trigger-table", "flaky hook");
    await trigger.getByText("delivery paused").waitFor();
    await screenshot("delivery-paused");
    await page.getByRole("button", { name: "Resume delivery flaky hook" }).click();
    await trigger.getByText("delivery paused").waitFor({ state: "detached" });
    await page.getByRole("button", { name: "Resume delivery flaky hook" }).waitFor({ state: "detached" });
  });

  it("redelivers a failed event from its row", async () => {
    const failed = row("event-table", "flaky hook").first();
    await failed.getByRole("button", { name: /Redeliver flaky hook/ }).click();
    await page.getByText("Redelivery of the flaky hook event queued.").waitFor();
    // The second series fails too (the port is closed): the event detail lists both series.
    await page.waitForFunction(() => {
      const rows = [...document.querySelectorAll("#event-rows tr")];
      return rows.length > 0 && rows.every((r) => r.textContent.includes("failure"));
    });
    await row("event-table", "flaky hook").first().getByRole("button", { name: /Details/ }).click();
    const dialog = page.locator("#event-dialog");
    await dialog.getByText(/#2 \(redelivery 1\)/).waitFor();
    await dialog.getByRole("button", { name: "Close" }).click();
    await dialog.waitFor({ state: "hidden" });
  });

  it("fits a 375 px wide screen with the repair controls", async () => {
    await page.setViewportSize({ width: 375, height: 800 });
    const failed = row("event-table", "flaky hook").first();
    await failed.getByRole("button", { name: /Redeliver flaky hook/ }).waitFor();
    // Paused again: the redelivered event failed once more, and the threshold is 1.
    await row("trigger-table", "flaky hook").getByText("delivery paused").waitFor();
    await page.getByRole("button", { name: "Resume delivery flaky hook" }).waitFor();
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(overflow <= 375, `page is ${overflow}px wide`);
    assert.ok(await failed.getByRole("button", { name: /Redeliver flaky hook/ }).isVisible());
    await screenshot("repair-mobile");
    await page.getByLabel("Status", { exact: true }).selectOption("");
    await page.setViewportSize({ width: 1280, height: 900 });
    assert.deepEqual(problems, []);
  });
});

describe("/docs", () => {
  it("runs a call from Swagger UI with the token", async () => {
    await page.goto(`${base}/docs`);
    await page.getByRole("button", { name: "Authorize" }).first().click();
    const modal = page.locator(".modal-ux");
    await modal.locator("#auth-bearer-value").fill(TOKEN);
    await modal.getByRole("button", { name: "Apply credentials" }).click();
    await modal.getByRole("button", { name: "Close" }).click();
    const op = page.locator("#operations-triggers-listTriggers");
    await op.locator(".opblock-summary-control").click();
    await op.getByRole("button", { name: "Try it out" }).click();
    await op.getByRole("button", { name: "Execute" }).click();
    await op.locator(".live-responses-table .response-col_status").getByText("200").waitFor();
    await op.getByText("order placed").first().waitFor();
    await screenshot("docs-execute");
    assert.deepEqual(urls.filter((u) => u.includes(TOKEN)), []);
    assert.deepEqual(problems, []);
  });
});
