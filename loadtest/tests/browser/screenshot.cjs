// Logs in to a running engine's ops console and saves a screenshot once the map shows
// associates: how docs/ops-console.png is made during a simulator run.
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
    await page.goto(process.env.BASE + "/ops");
    await page.fill("#key", process.env.ADMIN_KEY);
    await page.click("button[type=submit]");
    await page.waitForFunction(() => Number(document.getElementById("located").textContent) > 10);
    // A few snapshots, so counters and markers have moved.
    await page.waitForTimeout(Number(process.env.AFTER_MS || 3000));
    await page.screenshot({ path: process.env.OUT });
    console.log("saved " + process.env.OUT);
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
