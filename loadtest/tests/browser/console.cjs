// The ops console in a real browser (headless Chromium through playwright-core), run by
// loadtest/tests/console.rs against an engine it started, during a short simulator run.
// Environment: BASE (the engine's URL), ADMIN_KEY, ORDER_ID (an allotted order nobody
// moves, with a short track), ASSOCIATE_ID (its associate), SCREENSHOT (where to save
// one), CHROMIUM (the browser binary).
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
    await page.waitForFunction(() => Number(document.getElementById("associates").textContent) >= 100);
    await page.waitForFunction(() => Number(document.getElementById("frames-rate").textContent) > 0);
    await page.waitForFunction(() => Number(document.getElementById("allotments-rate").textContent) >= 0
      && Number(document.getElementById("orders").textContent) >= 2);
    await page.waitForFunction(() => document.getElementById("first-offer").textContent.includes("ms"));
    await page.waitForFunction(() => / %$/.test(document.getElementById("fulfilment").textContent));
    // Associates are drawn one by one (the available colour, #3fb950, at their centres).
    await page.waitForFunction(() => document.getElementById("detail").textContent === "each associate");
    await page.waitForFunction(() => {
      const c = document.getElementById("map");
      const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
      let marked = 0;
      for (let i = 0; i < d.length; i += 4) if (d[i] === 0x3f && d[i + 1] === 0xb9 && d[i + 2] === 0x50) marked++;
      return marked > 50;
    });
    // Orders on the move, with both parties' positions (the stuck one at least).
    await page.waitForFunction(() => Number(document.getElementById("moving").textContent) >= 1);
    // The stuck order is listed as stalled; clicking it shows its timeline, stall included.
    const stuck = `#orders-list li[data-order="${env("ORDER_ID")}"].stalled`;
    await page.waitForSelector(stuck);
    await page.click(stuck);
    await page.waitForFunction(() => document.getElementById("order-state").textContent === "state: allotted");
    await page.waitForFunction(() => [...document.querySelectorAll("#timeline li")].some(li => li.textContent.includes("(stalled)")));
    // Its track replays on the map: at least the user's position and the associate's five.
    await page.waitForFunction(() => /^\d+ points kept$/.test(document.getElementById("replay-status").textContent));
    await page.click("#replay");
    await page.waitForFunction(() => {
      const done = /^replayed (\d+) points$/.exec(document.getElementById("replay-status").textContent);
      return done && Number(done[1]) >= 6;
    });
    await page.screenshot({ path: env("SCREENSHOT"), fullPage: true });
    // Zoomed far out, the engine counts associates per cell instead.
    await page.mouse.move(500, 400);
    for (let i = 0; i < 25; i++) await page.mouse.wheel(0, 100);
    await page.waitForFunction(() => document.getElementById("detail").textContent.startsWith("per cell (H3 res "));
    // Cancelling the stuck order from the page changes its state.
    await page.fill("#reason", "stuck: cancelled from the console test");
    await page.click("#cancel");
    await page.waitForFunction(() => document.getElementById("order-state").textContent === "state: cancelled");
    // Its associate, free again, is taken offline.
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
