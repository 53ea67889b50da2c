// Logs in to a running engine's ops console and saves a screenshot once the map shows
// associates: how docs/ops-console.png is made during a simulator run. It also prints the
// mean size of the snapshots the console received, at the fitted view and zoomed out.
//   NODE_PATH=<node_modules> BASE=http://127.0.0.1:18080 ADMIN_KEY=... OUT=docs/ops-console.png \
//     node loadtest/tests/browser/screenshot.cjs
"use strict";
const { chromium } = require("playwright-core");

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
  });
  try {
    const context = await browser.newContext({ viewport: { width: 1400, height: 860 }, bypassCSP: true });
    const page = await context.newPage();
    page.setDefaultTimeout(30000);
    // The size of each snapshot the ops socket sends, to report what a viewer receives.
    const sizes = [];
    page.on("websocket", ws => ws.on("framereceived", f => sizes.push(f.payload.length)));
    await page.goto(process.env.BASE + "/ops");
    await page.fill("#key", process.env.ADMIN_KEY);
    await page.click("button[type=submit]");
    await page.waitForFunction(() => Number(document.getElementById("located").textContent) > 10);
    // A few snapshots, so counters and markers have moved.
    await page.waitForTimeout(Number(process.env.AFTER_MS || 3000));
    await page.screenshot({ path: process.env.OUT });
    console.log("saved " + process.env.OUT);
    const mean = xs => Math.round(xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length));
    const detail = await page.evaluate(() => document.getElementById("detail").textContent);
    console.log(`snapshots at the fitted view (${detail}): ${sizes.length}, mean ${mean(sizes)} bytes`);
    // Zoomed far out: the engine counts associates per cell.
    sizes.length = 0;
    await page.mouse.move(500, 400);
    for (let i = 0; i < 25; i++) await page.mouse.wheel(0, 100);
    await page.waitForFunction(() => document.getElementById("detail").textContent.startsWith("per cell"));
    sizes.length = 0;
    await page.waitForTimeout(3000);
    const wide = await page.evaluate(() => document.getElementById("detail").textContent);
    console.log(`snapshots zoomed out (${wide}): ${sizes.length}, mean ${mean(sizes)} bytes`);
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
