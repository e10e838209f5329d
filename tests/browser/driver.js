// driver.js: one headless Debian Chromium driven by playwright-core, commanded over
// stdin/stdout so a test can run it inside a test host's network namespace.
// Each input line is a JSON command; each output line {"id": n, "ok": value} or
// {"id": n, "error": message}. Commands: goto {url}, eval {js}, wait {js, ms},
// click {selector}, fill {selector, value}, press {selector, key}, select {selector, value},
// screenshot {path}. The first output line is {"ready": true}.
"use strict";
const fs = require("fs");
const os = require("os");
const path = require("path");
const readline = require("readline");
const { chromium } = require("playwright-core");

async function main() {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "nws-chromium-"));
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    viewport: { width: 1280, height: 800 },
    bypassCSP: true,   // waitForFunction evaluates strings; the console forbids eval
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const page = ctx.pages()[0] || await ctx.newPage();
  const logs = [];
  page.on("console", (m) => logs.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => logs.push(`pageerror: ${e.message}`));
  const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");
  const run = {
    goto: (c) => page.goto(c.url).then(() => true),
    eval: (c) => page.evaluate(c.js),
    wait: (c) => page.waitForFunction(c.js, null, { timeout: c.ms || 10000 })
      .then((h) => h.jsonValue()),
    click: (c) => page.click(c.selector).then(() => true),
    fill: (c) => page.fill(c.selector, c.value).then(() => true),
    press: (c) => page.press(c.selector, c.key).then(() => true),
    select: (c) => page.selectOption(c.selector, c.value).then(() => true),
    screenshot: (c) => page.screenshot({ path: c.path, fullPage: true }).then(() => c.path),
    logs: () => Promise.resolve(logs),
  };
  out({ ready: true });
  const rl = readline.createInterface({ input: process.stdin });
  for await (const line of rl) {
    let cmd;
    try { cmd = JSON.parse(line); } catch (e) { out({ error: "bad command" }); continue; }
    try {
      out({ id: cmd.id, ok: await run[cmd.cmd](cmd) });
    } catch (e) {
      out({ id: cmd.id, error: String(e && e.message || e), logs });
    }
  }
  await ctx.close();
  fs.rmSync(profile, { recursive: true, force: true });
}

main().catch((e) => { process.stderr.write(`driver: ${e.stack || e}\n`); process.exit(1); });
