// Helpers for the browser tests: Debian's Chromium through playwright-core,
// sign-in through Dex, screenshots, form submits that report the status.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, mkdir, readFile, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { chromium } from 'playwright-core';

function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run the tests with e2e/run`);
  return value;
}

export const BASE = process.env.TP_E2E_BASE_URL ?? 'http://127.0.0.1:8080';
export const OUTPUT = process.env.TP_E2E_OUTPUT ?? new URL('../test-output/e2e/', import.meta.url).pathname;
const CHROMIUM = process.env.TP_E2E_CHROMIUM ?? '/usr/bin/chromium';
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
/** How long one action or navigation may take before the test fails. */
export const TIMEOUT = 15_000;

/** A fresh tenant slug for this run, with the prefix e2e/run cleans up after. */
export function uniqueSlug() {
  const prefix = process.env.TP_E2E_SLUG_PREFIX ?? 'e2e';
  const letters = Array.from({ length: 5 }, () => String.fromCharCode(97 + Math.floor(Math.random() * 26)));
  return prefix + letters.join('');
}

const open = new Set();

/**
 * A browser of its own (a fresh user-data-dir, so no cookies are shared) with
 * one page. Every dialog the page opens is recorded in `dialogs` and dismissed.
 */
export async function newBrowser() {
  const profile = await mkdtemp(join(tmpdir(), 'tp-e2e-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    baseURL: BASE,
    viewport: { width: 1280, height: 900 },
    timeout: 30_000,
  });
  context.setDefaultTimeout(TIMEOUT);
  context.setDefaultNavigationTimeout(TIMEOUT);
  const page = context.pages()[0] ?? (await context.newPage());
  const dialogs = [];
  context.on('page', (p) => p.on('dialog', (d) => record(d)));
  page.on('dialog', (d) => record(d));
  function record(dialog) {
    dialogs.push(`${dialog.type()}: ${dialog.message()}`);
    dialog.dismiss().catch(() => {});
  }
  const browser = {
    context,
    page,
    dialogs,
    async close() {
      open.delete(browser);
      await context.close().catch(() => {});
      await rm(profile, { recursive: true, force: true });
    },
  };
  open.add(browser);
  return browser;
}

/** Closes every browser still open (for `after`). */
export async function closeAll() {
  await Promise.all([...open].map((b) => b.close()));
}

/** Saves a full-page screenshot as test-output/e2e/<name>. */
export async function screenshot(page, name) {
  await mkdir(OUTPUT, { recursive: true });
  await page.screenshot({ path: join(OUTPUT, name), fullPage: true });
}

/**
 * `node:test`'s `test`, plus a screenshot of every open page when it fails
 * (test-output/e2e/failed-<test name>-<n>.png), to see what the browser saw.
 */
export function step(name, fn) {
  return test(name, async (t) => {
    try {
      await fn(t);
    } catch (error) {
      const file = name.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 60);
      let n = 0;
      for (const b of open) {
        n += 1;
        const url = b.page.url();
        await screenshot(b.page, `failed-${file}-${n}.png`).catch(() => {});
        t.diagnostic(`page ${n} was at ${url} (screenshot failed-${file}-${n}.png)`);
      }
      throw error;
    }
  });
}

export const USERS = {
  admin: { email: 'TP_IDP_ADMIN_EMAIL', password: 'TP_IDP_ADMIN_PASSWORD' },
  alice: { email: 'TP_IDP_ALICE_EMAIL', password: 'TP_IDP_ALICE_PASSWORD' },
  bob: { email: 'TP_IDP_BOB_EMAIL', password: 'TP_IDP_BOB_PASSWORD' },
  carol: { email: 'TP_IDP_CAROL_EMAIL', password: 'TP_IDP_CAROL_PASSWORD' },
};

/**
 * Signs `who` in as a person would: opens `start` (the home page by default),
 * expects the portal to send the browser to Dex, fills Dex's login form and
 * waits until Dex has sent the browser back to the portal.
 * Returns the email signed in with.
 */
export async function loginAs(page, who, { start = '/' } = {}) {
  const names = USERS[who];
  if (!names) throw new Error(`no such test user: ${who}`);
  const email = required(names.email);
  const password = required(names.password);
  const issuer = new URL(required('TP_IDP_ISSUER'));
  const portal = new URL(BASE);

  const first = await page.goto(start);
  const at = new URL(page.url());
  if (at.origin !== issuer.origin) {
    throw new Error(
      `opening ${start} without a session should lead to sign-in at ${issuer.origin}, ` +
        `but the browser stayed at ${page.url()} (status ${first?.status()})`,
    );
  }
  await page.locator('#login').fill(email);
  await page.locator('#password').fill(password);
  const back = page.waitForURL((url) => url.origin === portal.origin).catch((e) => e);
  await page.locator('#submit-login').click();
  if ((await back) instanceof Error) {
    const said = await page.locator('body').innerText().catch(() => '');
    throw new Error(`Dex did not send ${email} back to the portal; at ${page.url()}: ${said.trim().slice(0, 300)}`);
  }
  await page.waitForLoadState('load');
  const path = new URL(page.url()).pathname;
  if (path.startsWith('/auth/')) {
    const said = await page.locator('body').innerText().catch(() => '');
    throw new Error(`sign-in of ${email} ended at ${page.url()}: ${said.trim().slice(0, 300)}`);
  }
  return email;
}

/**
 * Clicks a submit button and waits for the page the browser ends on
 * (after redirects). Returns that page's response, so tests can check the
 * status (e.g. 422 for a form with errors).
 */
export async function submit(page, button) {
  const landed = page.waitForResponse(
    (r) =>
      r.request().isNavigationRequest() &&
      r.frame() === page.mainFrame() &&
      !(r.status() >= 300 && r.status() < 400),
  );
  await button.click();
  const response = await landed;
  await page.waitForLoadState('load');
  return response;
}

/** GETs an API path with the page's session cookie; fails unless 200. */
export async function api(page, path) {
  const response = await page.request.get(`/api/v1${path}`);
  if (response.status() !== 200) {
    throw new Error(`GET /api/v1${path} answered ${response.status()}: ${(await response.text()).slice(0, 300)}`);
  }
  return response.json();
}

/** Sends a JSON API request with the page's session and CSRF token; fails unless 2xx. */
export async function send(page, method, path, body) {
  const { csrf_token: csrf } = await api(page, '/me');
  const response = await page.request.fetch(`/api/v1${path}`, {
    method,
    headers: { 'content-type': 'application/json', 'x-csrf-token': csrf },
    data: body === undefined ? undefined : JSON.stringify(body),
  });
  assert.ok(response.status() < 300, `${method} ${path}: ${response.status()} ${await response.text()}`);
  return response;
}

/** Runs SQL against the portal's database (TP_E2E_DATABASE_URL). */
export function psql(sql) {
  const url = process.env.TP_E2E_DATABASE_URL;
  if (!url) throw new Error('TP_E2E_DATABASE_URL is not set: run the tests with e2e/run');
  execFileSync('psql', ['-q', '-X', '-v', 'ON_ERROR_STOP=1', url, '-c', sql], { stdio: 'pipe' });
}

/** The widths every page is checked at: a laptop and a phone (iPhone 12 to 15). */
export const WIDTHS = [
  { name: 'desktop', width: 1280, height: 900 },
  { name: 'phone', width: 390, height: 844 },
];

/** What axe checks: WCAG 2.1 A and AA, and Deque's best practices. */
const AXE_TAGS = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'];
let axeSource;

/**
 * Runs axe-core (the version pinned in package.json) on the page as it is
 * and returns its violations, each as one line: rule, impact, help, and the
 * elements it found with what is wrong with them.
 */
export async function axeViolations(page) {
  if (!axeSource) {
    const require = createRequire(import.meta.url);
    axeSource = await readFile(require.resolve('axe-core/axe.min.js'), 'utf8');
  }
  if (!(await page.evaluate(() => typeof window.axe === 'object'))) {
    await page.addScriptTag({ content: axeSource });
  }
  const result = await page.evaluate(
    (tags) => window.axe.run(document, { runOnly: { type: 'tag', values: tags }, resultTypes: ['violations'] }),
    AXE_TAGS,
  );
  return result.violations.map(
    (v) =>
      `${v.id} (${v.impact}): ${v.help}\n` +
      v.nodes.map((n) => `    ${n.target.join(' ')}: ${n.failureSummary.replace(/\s+/g, ' ')}`).join('\n'),
  );
}
