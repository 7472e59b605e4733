// Loads one URL in Debian's Chromium (headless, driven by playwright-core) and reports what the
// page showed. Used by tests/e2e/e2e_clients.py; one browser per call, so every load starts
// from a fresh profile.
//
//   node browser.mjs JOB.json      (prints one JSON line)
//
// JOB: {
//   url,                      page to load
//   home,                     $HOME for Chromium: client certificates come from $HOME/.pki/nssdb
//   userDataDir,              fresh, empty directory for the profile
//   autoSelect: [{pattern, issuerCN}],   written to the profile as the auto_select_certificate
//                             content setting, the per-profile form of AutoSelectCertificateForUrls
//                             (the managed policy file is the test's business, not this script's)
//   waitForReport,            wait until the page sets window.certgateReport
//   steps: [{click: TEXT} | {waitForText: TEXT}],   then, in order (text found through shadow
//                             DOMs too, e.g. in chrome:// pages); out.steps counts those done
//   screenshot,               PNG path, or null
//   timeoutMs, viewport: {width, height}
// }
import fs from 'fs';
import path from 'path';
import { chromium } from 'playwright-core';

const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';

// Without these, Chromium reaches for Google's services at start-up (and the closed CI network
// refuses every one of them); QUIC is off so every request is the TLS-over-TCP certgate serves.
const ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-features=MediaRouter,OptimizationHints',
  '--autoplay-policy=no-user-gesture-required',
];

function writeAutoSelect(userDataDir, rules) {
  if (!rules || rules.length === 0) return;
  const exceptions = {};
  for (const r of rules) {
    exceptions[`${r.pattern},*`] = {
      last_modified: '13300000000000000',
      setting: { filters: [{ ISSUER: { CN: r.issuerCN } }] },
    };
  }
  const prefs = { profile: { content_settings: { exceptions: { auto_select_certificate: exceptions } } } };
  fs.mkdirSync(path.join(userDataDir, 'Default'), { recursive: true });
  fs.writeFileSync(path.join(userDataDir, 'Default', 'Preferences'), JSON.stringify(prefs));
}

const job = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const timeout = job.timeoutMs ?? 20000;
const out = {
  status: null, url: null, title: null, text: null, report: null,
  console: [], responses: [], error: null, screenshot: null, steps: 0,
};

writeAutoSelect(job.userDataDir, job.autoSelect);
const context = await chromium.launchPersistentContext(job.userDataDir, {
  executablePath: CHROMIUM,
  headless: true,
  args: ARGS,
  env: { ...process.env, HOME: job.home },
  viewport: job.viewport ?? { width: 800, height: 600 },
  timeout,
});
try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('console', (m) => out.console.push(`${m.type()}: ${m.text()}`));
  page.on('response', (r) => {
    out.responses.push({
      url: r.url(), status: r.status(), range: r.request().headers()['range'] ?? null,
    });
  });
  try {
    const resp = await page.goto(job.url, { timeout, waitUntil: 'load' });
    out.status = resp ? resp.status() : null;
    if (job.waitForReport) {
      await page.waitForFunction(() => window.certgateReport !== undefined, null, { timeout });
      out.report = await page.evaluate(() => window.certgateReport);
    }
    for (const step of job.steps ?? []) {
      if (step.click !== undefined) {
        await page.getByText(step.click, { exact: false }).first().click({ timeout });
      } else if (step.waitForText !== undefined) {
        await page.getByText(step.waitForText, { exact: false }).first().waitFor({ timeout });
      }
      out.steps += 1;
    }
  } catch (err) {
    out.error = String(err.message ?? err).split('\n')[0];
  }
  out.url = page.url();
  out.title = await page.title().catch(() => null);
  out.text = await page.evaluate(() => document.body ? document.body.innerText : '').catch(() => null);
  if (job.screenshot) {
    await page.screenshot({ path: job.screenshot });
    out.screenshot = job.screenshot;
  }
} finally {
  await context.close();
}
process.stdout.write(JSON.stringify(out) + '\n');
