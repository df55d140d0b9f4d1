// Drives Ferry's upload page in real headless Chromium (Debian's, through playwright-core).
// Started by tests/api/page.rs, which runs two Ferry instances and passes their URLs:
//   FERRY_PAGE_URL          a Ferry whose store allows the page's origin
//   FERRY_PAGE_URL_BLOCKED  a Ferry whose store's CORS does not allow it
//   FERRY_CHROMIUM          the browser binary; FERRY_SCREENSHOT where to save a screenshot
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};

const browser = await chromium.launch({
  executablePath: env("FERRY_CHROMIUM"),
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});

async function signIn(page, url, user) {
  await page.goto(url);
  await page.getByLabel("User id").fill(user);
  await page.getByRole("button", { name: "Use this user" }).click();
  await page.getByText(`Signed in as ${user}`).waitFor();
}

try {
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1100, height: 800 } });

  // 1. A few MiB chosen, straight to the bucket, progress to 100%, listed, downloaded intact.
  const page = await context.newPage();
  await signIn(page, env("FERRY_PAGE_URL"), "page-user");

  // The list pages through nextCursor: the test made 55 files before, the page shows 50 and
  // "Show more" brings the rest.
  await page.locator("#file-rows tr").nth(49).waitFor();
  assert.equal(await page.locator("#file-rows tr").count(), 50);
  await page.getByRole("button", { name: "Show more" }).click();
  await page.locator("#file-rows tr").nth(54).waitFor();
  assert.equal(await page.locator("#file-rows tr").count(), 55);
  assert.ok(await page.getByRole("button", { name: "Show more" }).isHidden(), "nothing more to show");
  // Choosing files works from the keyboard: Enter on the focused button opens the file input.
  // (The input's own click is observed and its native dialog suppressed: deterministic, unlike
  // waiting for the browser's file-chooser event on a loaded machine.)
  await page.evaluate(() => {
    const input = document.getElementById("file-input");
    input.addEventListener("click", (event) => { window.chooserOpened = true; event.preventDefault(); }, { once: true });
  });
  await page.getByRole("button", { name: "Choose files" }).focus();
  await page.keyboard.press("Enter");
  assert.equal(await page.evaluate(() => window.chooserOpened === true), true, "Enter opens the file chooser");
  assert.equal(await page.locator("#file-input").evaluate((input) => input.multiple), true, "several files at once");
  const bytes = randomBytes(3 * 1024 * 1024 + 17);
  await page.setInputFiles("#file-input", { name: "holiday photo.bin", mimeType: "application/octet-stream", buffer: bytes });
  await page.locator("#transfers .transfer-status.done").waitFor({ timeout: 60_000 });
  assert.equal(await page.locator("#transfers progress").first().evaluate((p) => p.value), 100);
  const row = page.locator("#file-rows tr", { hasText: "holiday photo.bin" });
  await row.waitFor();
  assert.match(await row.innerText(), /3\.1 MB/);
  const [download] = await Promise.all([
    page.waitForEvent("download"),
    page.getByRole("button", { name: "Download holiday photo.bin" }).click(),
  ]);
  assert.equal(download.suggestedFilename(), "holiday photo.bin");
  const got = await readFile(await download.path());
  assert.ok(got.equals(bytes), "the downloaded bytes are the uploaded bytes");

  // A file over the page's multipart threshold goes in parts, three at a time, each retried, and
  // comes back whole. Parts are 16 MiB at least: 48 MiB + 3 bytes is four parts. Every part PUT
  // passes through this route, which holds the first ones until three are in flight at once (a
  // page sending one or two at a time would never get there: the hold gives up after 30 s and
  // the count below fails), and drops part 2's first attempt as a broken connection would.
  const partRequests = [];
  let mode = "big";
  let inFlight = 0;
  let maxInFlight = 0;
  let released = false;
  let release;
  const gate = new Promise((resolve) => { release = resolve; });
  const gateTimeout = setTimeout(() => release(), 30_000);
  const counted = new Set();
  const settle = (request) => { if (counted.delete(request)) inFlight -= 1; };
  // A part stops counting when its answer arrives ("response" comes in the browser's own event
  // order, before the page can start the next part; "requestfinished" may come later).
  page.on("response", (response) => settle(response.request()));
  page.on("requestfinished", settle);
  page.on("requestfailed", settle);
  const isPart = (url) => url.searchParams.has("partNumber");
  await page.route(isPart, async (route) => {
    const request = route.request();
    if (request.method() !== "PUT") return route.continue();
    const url = new URL(request.url());
    const partNumber = Number(url.searchParams.get("partNumber"));
    const attempt = partRequests.filter((p) => p.mode === mode && p.partNumber === partNumber).length + 1;
    partRequests.push({ mode, partNumber, attempt, url: request.url() });
    if (mode === "doomed" && partNumber === 1) return route.abort("connectionreset");
    if (mode === "stall") return new Promise(() => {}); // held until the page cancels it
    if (mode === "big" && partNumber === 2 && attempt === 1) return route.abort("connectionreset");
    if (mode === "late" && attempt === 1) return route.abort("connectionreset");
    counted.add(request);
    inFlight += 1;
    maxInFlight = Math.max(maxInFlight, inFlight);
    if (mode === "big" && !released) {
      if (inFlight >= 3) { released = true; release(); }
      await gate;
    }
    return route.continue();
  });
  const large = randomBytes(48 * 1024 * 1024 + 3);
  await page.setInputFiles("#file-input", { name: "big video.mp4", mimeType: "video/mp4", buffer: large });
  await page.locator("#transfers li", { hasText: "big video.mp4" }).locator(".transfer-status.done").waitFor({ timeout: 180_000 });
  clearTimeout(gateTimeout);
  const bigParts = partRequests.filter((p) => p.mode === "big");
  assert.deepEqual([...new Set(bigParts.map((p) => p.partNumber))].sort(), [1, 2, 3, 4], "four parts were sent");
  assert.equal(bigParts.filter((p) => p.partNumber === 2).length, 2, "the dropped part was retried once");
  assert.equal(bigParts.length, 5, "every other part went once");
  assert.equal(maxInFlight, 3, "three parts at a time, never more");
  const [bigDownload] = await Promise.all([
    page.waitForEvent("download"),
    page.getByRole("button", { name: "Download big video.mp4" }).click(),
  ]);
  assert.ok((await readFile(await bigDownload.path())).equals(large), "the multipart upload came back whole");

  // A part that fails every time: tried three times (each part is retried twice), then the page
  // shows the error with Retry and keeps the multipart upload (remembered for resuming, so
  // nothing is aborted).
  mode = "doomed";
  const aborts = [];
  page.on("request", (r) => { if (r.url().endsWith("/multipart/abort")) aborts.push(r.url()); });
  await page.setInputFiles("#file-input", { name: "doomed.bin", mimeType: "application/octet-stream", buffer: randomBytes(9 * 1024 * 1024) });
  const doomed = page.locator("#transfers li", { hasText: "doomed.bin" });
  await doomed.locator(".transfer-status.error").waitFor({ timeout: 60_000 });
  assert.ok(await doomed.getByRole("button", { name: "Retry" }).isVisible());
  const doomedParts = partRequests.filter((p) => p.mode === "doomed");
  assert.deepEqual(doomedParts.map((p) => p.attempt), [1, 2, 3], "one part, three attempts");
  assert.deepEqual(aborts, [], "a failed upload is kept for resuming, not aborted");

  // Cancel aborts: parts are held at the route until the user presses Cancel; the page then
  // aborts the multipart upload in the bucket, so its part URL no longer works.
  mode = "stall";
  const held = page.waitForRequest((r) => r.method() === "PUT" && r.url().includes("partNumber="), { timeout: 60_000 });
  const aborted = page.waitForResponse((r) => r.url().endsWith("/multipart/abort"), { timeout: 60_000 });
  await page.setInputFiles("#file-input", { name: "cancelled.bin", mimeType: "application/octet-stream", buffer: randomBytes(9 * 1024 * 1024) });
  const heldPart = await held;
  const cancelled = page.locator("#transfers li", { hasText: "cancelled.bin" });
  await cancelled.getByRole("button", { name: "Cancel" }).click();
  assert.equal((await aborted).status(), 200, "the cancelled upload was aborted");
  const afterAbort = await fetch(heldPart.url(), { method: "PUT", body: "late part" });
  assert.equal(afterAbort.status, 404, "the aborted upload is gone from the bucket");
  assert.match(await afterAbort.text(), /NoSuchUpload/);

  // Cancel while a part waits for a fresh URL (its first attempt failed; the page is asking Ferry
  // to sign it again, and that answer is held here until after the click): nothing is in flight
  // to abort, and the part must not start once the URL arrives. The upload is aborted instead.
  mode = "late";
  let urlCalls = 0;
  let releaseUrls;
  const urlsHeld = new Promise((resolve) => { releaseUrls = resolve; });
  let resigning;
  const resignAsked = new Promise((resolve) => { resigning = resolve; });
  const isUrls = (url) => url.pathname === "/multipart/urls";
  await page.route(isUrls, async (route) => {
    urlCalls += 1;
    if (urlCalls === 2) { resigning(); await urlsHeld; }
    return route.continue();
  });
  const lateAborted = page.waitForResponse((r) => r.url().endsWith("/multipart/abort"), { timeout: 60_000 });
  await page.setInputFiles("#file-input", { name: "late.bin", mimeType: "application/octet-stream", buffer: randomBytes(9 * 1024 * 1024) });
  await resignAsked;
  const late = page.locator("#transfers li", { hasText: "late.bin" });
  await late.getByRole("button", { name: "Cancel" }).click();
  releaseUrls();
  assert.equal((await lateAborted).status(), 200, "the upload cancelled while waiting for a URL was aborted");
  await late.locator(".transfer-status.error").waitFor({ timeout: 30_000 });
  assert.match(await late.locator(".transfer-status").innerText(), /Cancelled/);
  assert.deepEqual(partRequests.filter((p) => p.mode === "late").map((p) => p.attempt), [1],
    "the part that waited for its fresh URL did not start after Cancel");
  await page.unroute(isUrls);
  await page.unroute(isPart);

  // Resume records past their upload's confirm window are forgotten when the page loads, whoever
  // they belong to (an upload started two hours ago, a record from before records were dated);
  // one started a minute ago is kept.
  const window = await page.evaluate(async () => (await (await fetch("/page-config")).json()).resumeWindowSeconds);
  assert.ok(window > 0 && window < 2 * 3600, `the test's old record must be past the window (${window} s)`);
  await page.evaluate(() => {
    const record = (startedAt) => JSON.stringify({ objectKey: "k", uploadId: "u", partSize: 1, partCount: 1, startedAt });
    localStorage.setItem("ferry-upload:someone:old.bin:1:1", record(Date.now() - 2 * 3600 * 1000));
    localStorage.setItem("ferry-upload:someone:undated.bin:1:1", JSON.stringify({ objectKey: "k", uploadId: "u" }));
    localStorage.setItem("ferry-upload:someone:recent.bin:1:1", record(Date.now() - 60 * 1000));
  });
  await signIn(page, env("FERRY_PAGE_URL"), "page-user"); // reloads the page
  const kept = await page.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith("ferry-upload:someone:")));
  assert.deepEqual(kept, ["ferry-upload:someone:recent.bin:1:1"], "only the record still in its window is kept");
  await page.evaluate(() => localStorage.removeItem("ferry-upload:someone:recent.bin:1:1"));

  // A reload in the middle of a multipart upload: choosing the same file again sends only the
  // parts the bucket does not have (the test also counts them at the store).
  const resumable = path.join(tmpdir(), `ferry-resume-${process.pid}.bin`);
  const resumableBytes = randomBytes(48 * 1024 * 1024); // three 16 MiB parts
  await writeFile(resumable, resumableBytes);
  try {
    const firstPart = page.waitForResponse((r) => r.request().method() === "PUT" && r.url().includes("partNumber=")
      && r.status() === 200, { timeout: 60_000 });
    await page.setInputFiles("#file-input", resumable);
    await firstPart;
    await signIn(page, env("FERRY_PAGE_URL"), "page-user"); // reloads the page mid-upload
    let resumedPuts = 0;
    page.on("request", (r) => { if (r.method() === "PUT" && r.url().includes("partNumber=")) resumedPuts += 1; });
    await page.setInputFiles("#file-input", resumable);
    const name = path.basename(resumable);
    await page.locator("#transfers li", { hasText: name }).locator(".transfer-status.done").waitFor({ timeout: 120_000 });
    assert.ok(resumedPuts < 3, `after the reload only missing parts were sent (${resumedPuts} of 3)`);
    const [resumedDownload] = await Promise.all([
      page.waitForEvent("download"),
      page.getByRole("button", { name: `Download ${name}` }).click(),
    ]);
    assert.ok((await readFile(await resumedDownload.path())).equals(resumableBytes), "the resumed upload came back whole");
    console.log(`resumed upload: ${resumedPuts} part PUTs after the reload`);
  } finally {
    await rm(resumable, { force: true });
  }

  await page.screenshot({ path: env("FERRY_SCREENSHOT"), fullPage: true });

  // 2. The store's CORS does not allow the page: a visible error, and nothing recorded.
  const blocked = await context.newPage();
  await signIn(blocked, env("FERRY_PAGE_URL_BLOCKED"), "page-user");
  await blocked.setInputFiles("#file-input", { name: "blocked.txt", mimeType: "text/plain", buffer: Buffer.from("nope") });
  const error = blocked.locator("#transfers .transfer-status.error");
  await error.waitFor({ timeout: 30_000 });
  assert.match(await error.innerText(), /storage service refused the upload from this page/);
  assert.ok(await blocked.getByRole("button", { name: "Retry" }).isVisible());
  assert.ok(await blocked.locator("#no-files").isVisible(), "no file is listed");
  console.log("page test: 6 passed, 0 failed");
} finally {
  await browser.close();
}
