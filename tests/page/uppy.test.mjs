// Drives the stock `uppy` bundle (examples/uppy, served here from its own origin) in real
// headless Chromium against Ferry, in both of Uppy's server modes. Started by tests/api/page.rs:
//   1. this script serves examples/uppy on a free port and prints `ORIGIN <url>`;
//   2. the test starts Ferry with that origin allowed and writes one JSON line to stdin:
//      {"runs": [{"ferry": <url>, "token": <jwt or null>, "files": [<paths>]}]}
//   3. this script uploads each run's files through the example page and prints `RESULT <json>`.
import assert from "node:assert/strict";
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import http from "node:http";
import path from "node:path";
import readline from "node:readline";
import { chromium } from "playwright-core";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};

const root = path.resolve(env("FERRY_UPPY_DIR"));
const types = { ".html": "text/html", ".mjs": "text/javascript", ".js": "text/javascript", ".css": "text/css" };
const server = http.createServer(async (req, res) => {
  const file = path.join(root, decodeURIComponent(new URL(req.url, "http://x").pathname));
  if (!file.startsWith(root + path.sep)) { res.writeHead(403).end(); return; }
  try {
    if (!(await stat(file)).isFile()) throw new Error("not a file");
    res.writeHead(200, { "content-type": types[path.extname(file)] || "application/octet-stream" });
    createReadStream(file).pipe(res);
  } catch {
    res.writeHead(404).end();
  }
});
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
const origin = `http://127.0.0.1:${server.address().port}`;
console.log(`ORIGIN ${origin}`);

const input = readline.createInterface({ input: process.stdin });
const { runs } = JSON.parse(await new Promise((resolve) => input.once("line", resolve)));
input.close();

const browser = await chromium.launch({
  executablePath: env("FERRY_CHROMIUM"),
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
const results = [];
try {
  for (const run of runs) {
    const page = await browser.newPage();
    const errors = [];
    page.on("pageerror", (err) => errors.push(String(err)));
    // What the browser saw go wrong, printed if an upload fails: Uppy itself only says
    // "network error", which covers a refused connection, a reset and a missing CORS header.
    const trail = [];
    page.on("console", (message) => { if (message.type() === "error") trail.push(`console: ${message.text()}`); });
    page.on("requestfailed", (request) =>
      trail.push(`failed: ${request.method()} ${request.url()}: ${request.failure()?.errorText}`));
    page.on("response", (response) => {
      if (response.status() >= 400) trail.push(`answer: ${response.status()} ${response.request().method()} ${response.url()}`);
    });
    const query = new URLSearchParams({ ferry: run.ferry, ...(run.token ? { token: run.token } : {}) });
    await page.goto(`${origin}/index.html?${query}`);
    await page.waitForFunction(() => window.uppy !== undefined);
    await page.locator("input.uppy-Dashboard-input[type=file]").first().setInputFiles(run.files);
    await page.locator(".uppy-StatusBar-actionBtn--upload").click();
    await page.waitForFunction(() => window.uppyResult !== undefined, null, { timeout: 120_000 });
    const outcome = await page.evaluate(() => ({
      successful: window.uppyResult.successful.map((f) => ({ name: f.name, size: f.size, key: f.s3Multipart?.key })),
      failed: window.uppyResult.failed.map((f) => ({ name: f.name, error: String(f.error) })),
    }));
    if (outcome.failed.length > 0) console.error(`what the browser saw:\n${trail.join("\n")}`);
    assert.deepEqual(outcome.failed, [], `no upload failed (${run.token ? "signRequest" : "Companion"} mode)`);
    assert.equal(outcome.successful.length, run.files.length);
    assert.deepEqual(errors, [], "no error on the page");
    results.push(outcome);
    await page.close();
  }
} finally {
  await browser.close();
  server.close();
}
console.log(`RESULT ${JSON.stringify(results)}`);
