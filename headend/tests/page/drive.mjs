// Keeps the operator's page open in Debian's chromium (headless, through playwright-core)
// and answers a test's orders, one JSON line each, on stdin/stdout:
//   node drive.mjs URL CARDS      opens URL, waits for CARDS channel cards, then prints
//                                 {"event":"rendered","channels":[ids...],"ms":...}
//   wait SELECTOR TIMEOUT_MS      {"event":"seen","ms":...} once SELECTOR matches, else
//                                 {"event":"timeout","ms":...}
//   shot PATH                     a full-page screenshot: {"event":"shot","path":PATH}
//   text SELECTOR                 {"event":"text","text":...} (the first match's text)
//   quit                          closes the browser and exits
// Exits on its own after 180 s, and when stdin closes (the test ended).
import { chromium } from "playwright-core";
import readline from "node:readline";

const [url, cards] = process.argv.slice(2);
const say = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const hardStop = setTimeout(() => { say({ event: "error", message: "ran over 180 s" }); process.exit(3); }, 180_000);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
  ],
});
const quit = async (code) => {
  clearTimeout(hardStop);
  await browser.close().catch(() => {});
  process.exit(code);
};
try {
  const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
  const problems = [];
  page.on("console", (m) => { if (m.type() === "error") problems.push(m.text()); });
  page.on("pageerror", (e) => problems.push(String(e)));
  const began = Date.now();
  await page.goto(url);
  await page.waitForFunction((n) => document.querySelectorAll(".card").length >= n, Number(cards), { timeout: 30_000 });
  const channels = await page.$$eval(".card", (cs) => cs.map((c) => c.dataset.channel));
  say({ event: "rendered", channels, ms: Date.now() - began, problems });

  const rl = readline.createInterface({ input: process.stdin });
  for await (const line of rl) {
    const [cmd, ...rest] = line.trim().split(" ");
    if (cmd === "wait") {
      const timeout = Number(rest.pop());
      const selector = rest.join(" ");
      const t0 = Date.now();
      try {
        await page.waitForSelector(selector, { state: "attached", timeout });
        say({ event: "seen", selector, ms: Date.now() - t0 });
      } catch {
        say({ event: "timeout", selector, ms: Date.now() - t0 });
      }
    } else if (cmd === "shot") {
      const path = rest.join(" ");
      await page.screenshot({ path, fullPage: true });
      say({ event: "shot", path });
    } else if (cmd === "text") {
      const text = await page.textContent(rest.join(" "));
      say({ event: "text", text, problems });
    } else if (cmd === "quit") {
      break;
    }
  }
  await quit(0);
} catch (e) {
  say({ event: "error", message: String(e) });
  await quit(2);
}
