// Opens the API docs page in headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core), waits for Swagger UI to render the served OpenAPI 3.1 document, saves
// screenshots and prints what it saw as JSON: the page title, the rendered operations, every
// request the page made, and console and page errors. tests/test_ecosystem_live.py asserts on it.
//
//   node tests/browser/docs_page.mjs <docs URL> <output folder>
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const [url, outDir] = process.argv.slice(2);
if (!url || !outDir) {
  console.error('usage: node tests/browser/docs_page.mjs <docs URL> <output folder>');
  process.exit(2);
}
mkdirSync(outDir, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
  headless: true,
  chromiumSandbox: false, // root in CI: --no-sandbox
  args: [
    '--disable-gpu',
    '--disable-quic',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--no-first-run',
  ],
});
const result = { url, requests: [], failedRequests: [], errorResponses: [], consoleErrors: [], pageErrors: [] };
try {
  // A new context is a fresh, empty profile.
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.on('request', (request) => result.requests.push(request.url()));
  page.on('requestfailed', (request) => result.failedRequests.push(request.url()));
  page.on('response', (r) => { if (r.status() >= 400) result.errorResponses.push(r.status() + ' ' + r.url()); });
  page.on('console', (message) => { if (message.type() === 'error') result.consoleErrors.push(message.text()); });
  page.on('pageerror', (error) => result.pageErrors.push(String(error)));

  const response = await page.goto(url, { waitUntil: 'load', timeout: 30000 });
  result.status = response ? response.status() : null;
  await page.waitForSelector('.opblock', { timeout: 30000 });
  await page.waitForLoadState('networkidle', { timeout: 10000 }).catch(() => {});
  result.title = await page.title();
  result.infoTitle = await page.locator('.info .title').first().innerText().catch(() => null);
  result.renderError = await page.locator('.errors-wrapper, .loading-container .errors').count();
  result.opblocks = await page.$$eval('.opblock', (nodes) => nodes.map((node) => ({
    id: node.id,
    method: (node.querySelector('.opblock-summary-method') || {}).textContent || '',
    path: (node.querySelector('.opblock-summary-path') || {}).getAttribute?.('data-path') || '',
  })));
  await page.screenshot({ path: join(outDir, 'docs.png') });

  // Open one operation: its parameters and schemas render too.
  const first = page.locator('.opblock').first();
  await first.locator('.opblock-summary').first().click();
  await first.locator('.opblock-body').waitFor({ timeout: 10000 });
  result.expandedOperation = await first.getAttribute('id');
  result.expandedHasParameters = (await first.locator('.parameters-container, .opblock-section').count()) > 0;
  await first.screenshot({ path: join(outDir, 'docs-operation.png') });
  await context.close();
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
