// The ops console in a real browser (headless Chromium through playwright-core), run by
// engine/tests/it/browser.rs against an engine it started. Environment: BASE (the
// engine's URL), ADMIN_KEY, ORDER_ID (an allotted order), ASSOCIATE_ID (an available
// associate), SCREENSHOT (where to save one), CHROMIUM (the browser binary).
"use strict";
const { chromium } = require("playwright-core");

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
  });
  try {
    // The console's Content-Security-Policy forbids eval, which playwright's waits use.
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, bypassCSP: true });
    const page = await context.newPage();
    page.setDefaultTimeout(15000);
    await page.goto(env("BASE") + "/ops");
    // A wrong key is refused.
    await page.fill("#key", "not-the-admin-key-0123456789");
    await page.click("button[type=submit]");
    await page.waitForFunction(() => document.getElementById("message").textContent === "Wrong key.");
    // The right one opens the console, whose socket goes live and whose counters move.
    await page.fill("#key", env("ADMIN_KEY"));
    await page.click("button[type=submit]");
    await page.waitForSelector("#map");
    await page.waitForFunction(() => document.getElementById("status").textContent === "live");
    await page.waitForFunction(() => Number(document.getElementById("associates").textContent) >= 2);
    await page.waitForFunction(() => Number(document.getElementById("orders").textContent) >= 1);
    // The latency and fulfilment panels have the order's request in them.
    await page.waitForFunction(() => document.getElementById("first-offer").textContent.includes("ms"));
    // (The test process's other engines share its metrics: only the shape is checked.)
    await page.waitForFunction(() => / %$/.test(document.getElementById("fulfilment").textContent));
    // Associate markers are drawn (the available colour, #3fb950, at their centres).
    await page.waitForFunction(() => {
      const c = document.getElementById("map");
      const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
      let marked = 0;
      for (let i = 0; i < d.length; i += 4) if (d[i] === 0x3f && d[i + 1] === 0xb9 && d[i + 2] === 0x50) marked++;
      return marked > 0;
    });
    // The order's timeline.
    await page.fill("#order-id", env("ORDER_ID"));
    await page.click("#order-form button");
    await page.waitForFunction(() => document.getElementById("order-state").textContent === "state: allotted");
    if ((await page.locator("#timeline li").count()) < 1) throw new Error("no events in the timeline");
    await page.screenshot({ path: env("SCREENSHOT"), fullPage: true });
    // Cancelling the stuck order from the page changes its state.
    await page.fill("#reason", "stuck: cancelled from the console test");
    await page.click("#cancel");
    await page.waitForFunction(() => document.getElementById("order-state").textContent === "state: cancelled");
    // Taking an associate offline.
    await page.fill("#associate-id", env("ASSOCIATE_ID"));
    await page.click("#associate-form button");
    await page.waitForFunction(() => document.getElementById("associate-result").textContent === "now offline");
    console.log("the console passed in a real browser");
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
