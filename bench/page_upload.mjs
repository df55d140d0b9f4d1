// Times Ferry's upload page sending one file in headless Chromium: from choosing the file to the
// page showing it done (presign, the PUTs straight to the bucket, the confirm). bench/run passes
// Ferry's URL, the file and the browser; playwright-core comes from tests/page's node_modules.
//   node bench/page_upload.mjs URL FILE CHROMIUM PLAYWRIGHT_DIR
import { createRequire } from "node:module";

const [url, file, executablePath, from] = process.argv.slice(2);
const { chromium } = createRequire(`${from}/`)("playwright-core");
const browser = await chromium.launch({
  executablePath,
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-sync"],
});
try {
  const page = await (await browser.newContext()).newPage();
  await page.goto(url);
  await page.getByLabel("User id").fill("bench-page");
  await page.getByRole("button", { name: "Use this user" }).click();
  await page.getByText("Signed in as bench-page").waitFor();
  const started = performance.now();
  await page.setInputFiles("#file-input", file);
  await page.locator("#transfers .transfer-status.done").waitFor({ timeout: 600_000 });
  console.log(`seconds=${((performance.now() - started) / 1000).toFixed(3)}`);
} finally {
  await browser.close();
}
