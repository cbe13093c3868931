// Every page of the dashboard at a laptop's width (1280 px) and a phone's
// (390 px): axe-core (WCAG 2.1 A and AA plus best practices) finds nothing,
// the page itself never scrolls sideways, tables that do are reachable by
// keyboard and show that they scroll, no text is drawn smaller than 12 px,
// the focus ring stands out from the page, and a refused form marks its
// invalid fields and takes the focus to them. Screenshots of each page at
// each width go to test-output/e2e/<page>-<width>.png.
import assert from 'node:assert/strict';
import { after } from 'node:test';
import {
  WIDTHS,
  axeViolations,
  closeAll,
  loginAs,
  newBrowser,
  psql,
  screenshot,
  send,
  step,
  submit,
  uniqueSlug,
} from './lib.mjs';

after(closeAll);

const slug = uniqueSlug();
let admin;
let alice;
let ready = false;

step('an admin sets up a tenant with prices, one usage sample, a quota request and a token', async () => {
  admin = await newBrowser();
  await loginAs(admin.page, 'admin');
  const { page } = admin;
  const since = new Date(Date.now() - 24 * 3600 * 1000).toISOString().replace(/\.\d+Z$/, 'Z');
  await send(page, 'PUT', '/prices', {
    prices: [
      { resource: 'requests.cpu', price: '0.04', effective_from: since },
      { resource: 'requests.memory', price: '0.005', effective_from: since },
    ],
  });
  await send(page, 'POST', '/tenants', {
    slug,
    display_name: 'E2E accessibility',
    description: 'A tenant whose pages are checked at two widths',
    budget: { 'requests.cpu': '4', 'requests.memory': '8Gi', pods: '20' },
    namespaces: [
      { name: 'app', allocations: { 'requests.cpu': '2', 'requests.memory': '4Gi', pods: '10' } },
      { name: 'batch', allocations: { 'requests.cpu': '1', 'requests.memory': '2Gi', pods: '5' } },
    ],
    members: [{ kind: 'group', subject: 'team-acme', role: 'owner' }],
  });
  // One sample only: the usage chart must still show something.
  psql(`INSERT INTO usage_samples (namespace_id, sampled_at, used)
        SELECT id, now() - interval '1 hour', '{"requests.cpu": "500m", "requests.memory": "1Gi"}'
        FROM namespaces WHERE full_name = '${slug}-app'`);
  await send(page, 'POST', '/quota-requests', {
    tenant: slug,
    resource: 'requests.cpu',
    amount: '6',
    reason: 'Load tests next week need two more cores for the batch namespace.',
  });
  await page.goto('/admin');
  await page.fill('#token-name', `${slug}-ci`);
  await page.locator('input[name=scope]').first().check();
  await page.fill('#token-tenants', slug);
  await page.fill('#token-expiry', '1d');
  await submit(page, page.getByRole('button', { name: 'Create token', exact: true }));

  alice = await newBrowser();
  await loginAs(alice.page, 'alice');
  ready = true;
});

/** The pages to check: who looks, where, and what to do there first. */
function pages() {
  return [
    { name: 'home', who: () => alice, path: '/' },
    { name: 'tenant', who: () => alice, path: `/tenants/${slug}` },
    { name: 'tenants', who: () => admin, path: '/tenants' },
    { name: 'new-tenant', who: () => alice, path: '/tenants/new' },
    {
      name: 'new-tenant-errors',
      who: () => alice,
      path: '/tenants/new',
      async act(page) {
        await page.fill('[name=slug]', 'Bad Slug!');
        await page.fill('[name=budget_cpu]', 'lots');
        await submit(page, page.getByRole('button', { name: 'Create tenant', exact: true }));
      },
    },
    { name: 'edit-tenant', who: () => admin, path: `/tenants/${slug}/edit` },
    {
      name: 'edit-tenant-errors',
      who: () => admin,
      path: `/tenants/${slug}/edit`,
      async act(page) {
        await page.fill('#display_name', '');
        await submit(page, page.getByRole('button', { name: 'Save', exact: true }));
      },
    },
    { name: 'quota-queue', who: () => admin, path: '/quota-requests' },
    { name: 'admin', who: () => admin, path: '/admin' },
    {
      name: 'admin-errors',
      who: () => admin,
      path: '/admin',
      async act(page) {
        await page.fill('#token-name', 'Not a name!');
        await submit(page, page.getByRole('button', { name: 'Create token', exact: true }));
      },
    },
    { name: 'fleet', who: () => admin, path: '/admin/fleet' },
  ];
}

/** What is wrong with the page's layout at its width, one line each. */
async function layoutProblems(page) {
  return page.evaluate(() => {
    const problems = [];
    const width = document.documentElement.clientWidth;
    if (document.documentElement.scrollWidth > width + 1) {
      const wide = [...document.querySelectorAll('main *, header *')]
        .filter((el) => el.getBoundingClientRect().right > width + 1 && !el.closest('.table-wrap'))
        .slice(0, 3)
        .map((el) => el.outerHTML.slice(0, 80));
      problems.push(`the page scrolls sideways (${document.documentElement.scrollWidth} px wide): ${wide.join(' | ')}`);
    }
    for (const wrap of document.querySelectorAll('.table-wrap')) {
      if (wrap.scrollWidth <= wrap.clientWidth) continue;
      const name = wrap.getAttribute('aria-label') ?? wrap.getAttribute('aria-labelledby');
      if (wrap.tabIndex < 0 || !name) problems.push(`a table that scrolls sideways cannot be reached by keyboard or has no name: ${wrap.outerHTML.slice(0, 80)}`);
      if (!getComputedStyle(wrap).backgroundImage.includes('gradient')) problems.push(`a table that scrolls sideways gives no sign of it: ${wrap.outerHTML.slice(0, 80)}`);
    }
    // Text drawn smaller than 12 px, in HTML or scaled down inside an SVG.
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    const small = new Set();
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      const el = node.parentElement;
      if (!node.textContent.trim() || !el || !el.getClientRects().length) continue;
      let size = parseFloat(getComputedStyle(el).fontSize);
      const svg = el.closest('svg');
      if (svg) size *= svg.getScreenCTM()?.a ?? 1;
      if (size < 12) small.add(`${size.toFixed(1)} px: ${node.textContent.trim().slice(0, 40)}`);
    }
    if (small.size) problems.push(`text smaller than 12 px: ${[...small].slice(0, 5).join(' | ')}`);
    // Every chart draws something, even from one sample.
    for (const svg of document.querySelectorAll('figure.chart svg')) {
      const drawn = [...svg.querySelectorAll('polyline, rect, circle, line')].filter((shape) => {
        const box = shape.getBoundingClientRect();
        return box.width > 1 && box.height > 1;
      });
      if (!drawn.length) problems.push(`an empty chart: ${svg.getAttribute('aria-label')}`);
    }
    return problems;
  });
}

step('every page has no axe violations and reads well at 1280 and 390 px', async (t) => {
  assert.ok(ready, 'needs the tenant of the first step');
  const found = [];
  for (const { name: width, ...size } of WIDTHS) {
    for (const { name, who, path, act } of pages()) {
      const { page } = who();
      await page.setViewportSize(size);
      const response = await page.goto(path);
      assert.ok(response.ok(), `${path} answered ${response.status()}`);
      if (act) await act(page);
      const problems = [...(await axeViolations(page)), ...(await layoutProblems(page))];
      t.diagnostic(`${name} at ${size.width} px: ${problems.length} problems`);
      for (const p of problems) found.push(`${name} at ${size.width} px: ${p}`);
      await screenshot(page, `${name}-${width}.png`);
    }
  }
  for (const b of [admin, alice]) await b.page.setViewportSize(WIDTHS[0]);
  assert.deepEqual(found, []);
});

/** Contrast ratio of two CSS rgb() colours (WCAG 2.1 relative luminance). */
function contrast(a, b) {
  const luminance = (css) => {
    const [r, g, bl] = css.match(/[\d.]+/g).slice(0, 3).map((v) => {
      const c = Number(v) / 255;
      return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * bl;
  };
  const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
  return (hi + 0.05) / (lo + 0.05);
}

step('the focus ring stands out at least 3:1 from the page and from a card', async () => {
  assert.ok(ready, 'needs the tenant of the first step');
  const { page } = alice;
  await page.goto(`/tenants/${slug}`);
  let ring = null;
  for (let i = 0; i < 40 && !ring; i += 1) {
    await page.keyboard.press('Tab');
    ring = await page.evaluate(() => {
      const el = document.activeElement;
      if (!el || !el.closest('main')) return null;
      const style = getComputedStyle(el);
      return { colour: style.outlineColor, width: parseFloat(style.outlineWidth), style: style.outlineStyle };
    });
  }
  assert.ok(ring, 'Tab never reached the page content');
  assert.notEqual(ring.style, 'none', 'focused content has no outline');
  assert.ok(ring.width >= 2, `the focus ring is ${ring.width} px wide`);
  const backgrounds = await page.evaluate(() => [
    getComputedStyle(document.body).backgroundColor,
    getComputedStyle(document.querySelector('section.card')).backgroundColor,
  ]);
  for (const bg of backgrounds) {
    const ratio = contrast(ring.colour, bg);
    assert.ok(ratio >= 3, `focus ring ${ring.colour} on ${bg} is ${ratio.toFixed(2)}:1`);
  }
});

step('a refused form marks its invalid fields and takes the focus to the first', async () => {
  assert.ok(ready, 'needs the tenant of the first step');
  const { page } = alice;
  await page.goto('/tenants/new');
  await page.fill('[name=slug]', 'Bad Slug!');
  await page.fill('[name=display_name]', 'Fine');
  await page.fill('[name=budget_cpu]', 'lots');
  const response = await submit(page, page.getByRole('button', { name: 'Create tenant', exact: true }));
  assert.equal(response.status(), 422);
  const invalid = await page.locator('[aria-invalid=true]').evaluateAll((els) => els.map((e) => e.name));
  assert.deepEqual(invalid.sort(), ['budget_cpu', 'slug']);
  assert.equal(await page.locator('[name=display_name]').getAttribute('aria-invalid'), null);
  const described = await page.locator('[name=slug]').getAttribute('aria-describedby');
  const error = await page.locator('[data-field=slug] .field-error').getAttribute('id');
  assert.ok(described.split(' ').includes(error), `slug is described by "${described}", not by its error ${error}`);
  await page.waitForFunction(() => document.activeElement?.name === 'slug', null, { timeout: 2_000 }).catch(() => {});
  assert.equal(await page.evaluate(() => document.activeElement?.name), 'slug', 'focus is not on the first invalid field');

  // A form whose refusal is one message for the whole form focuses that message.
  await page.goto(`/tenants/${slug}/edit`);
  await page.fill('#confirm', 'not-the-slug');
  await submit(page, page.locator('form#delete-tenant [type=submit]'));
  await page.waitForFunction(() => document.activeElement?.matches('[role=alert], [aria-invalid=true]'), null, { timeout: 2_000 }).catch(() => {});
  const focused = await page.evaluate(() => document.activeElement?.outerHTML.slice(0, 120));
  assert.ok(
    await page.evaluate(() => document.activeElement?.matches('[role=alert], [aria-invalid=true]')),
    `after a refused delete the focus is on ${focused}`,
  );
  await send(admin.page, 'DELETE', `/tenants/${slug}`);
});
