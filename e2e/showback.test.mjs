// Showback in the browser: an admin sets prices, opens the fleet page, sees
// the top tenants and downloads the month's CSV; the tenant's owner sees its
// cost and utilisation on the tenant page. The usage history is written into
// the portal's database (TP_E2E_DATABASE_URL), as the sampler would have
// written it over the last three hours (so in the first three hours of a
// month part of it falls in the month before, and the fleet page's figures
// are smaller).
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after } from 'node:test';
import { closeAll, loginAs, newBrowser, psql, screenshot, send, step, uniqueSlug } from './lib.mjs';

after(closeAll);

const slug = uniqueSlug();
let admin;
let ready = false;

step('an admin sets prices for a tenant with a usage history', async () => {
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
    display_name: 'E2E showback',
    budget: { 'requests.cpu': '4', 'requests.memory': '8Gi' },
    namespaces: [{ name: 'app', allocations: { 'requests.cpu': '2', 'requests.memory': '4Gi' } }],
    members: [{ kind: 'group', subject: 'team-acme', role: 'owner' }],
  });
  // Three samples an hour apart, the last an hour ago: 2 cores and 4Gi
  // allocated, 500m and 1Gi used, then idle memory.
  for (const [hours, cpu, memory] of [[3, '500m', '1Gi'], [2, '1', '1Gi'], [1, '500m', '0']]) {
    psql(`INSERT INTO usage_samples (namespace_id, sampled_at, used)
          SELECT id, now() - interval '${hours} hours', '{"requests.cpu": "${cpu}", "requests.memory": "${memory}"}'
          FROM namespaces WHERE full_name = '${slug}-app'`);
  }
  ready = true;
});

step('the fleet page shows the top tenants with their numbers, and the CSV downloads', async () => {
  assert.ok(ready, 'needs the prices and the history of the previous step');
  const { page } = admin;
  await page.goto('/admin');
  await page.getByRole('link', { name: /Fleet/ }).click();
  await page.waitForURL('**/admin/fleet');
  assert.equal((await page.locator('h1').innerText()).trim(), 'Fleet');
  const row = page.locator('#top-cost tr', { hasText: slug });
  assert.equal(await row.count(), 1, `${slug} is among the top tenants by cost`);
  // 2 cores for 3 hours at 0.04 and 4 GiB for 3 hours at 0.005, up to now:
  // 0.30 and a little, rounded to the cent for people, in the portal's
  // currency (the default, USD).
  const cost = (await row.locator('td').nth(1).innerText()).trim();
  assert.match(cost, /^0\.3[01] USD$/, `reserved cost ${cost}`);
  assert.ok(await page.locator('#top-waste tr', { hasText: slug }).count(), 'and by waste');
  assert.ok(await page.locator('[role=img][aria-label="Top tenants by reserved cost"] .fill').count() > 0, 'a chart');
  await screenshot(page, 'fleet.png');

  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#fleet-csv')]);
  const csv = await readFile(await download.path(), 'utf8');
  const lines = csv.trimEnd().split('\r\n');
  assert.equal(lines[0], 'tenant,resource,unit,allocated,used,allocated_cost,used_cost,currency');
  assert.match(lines.at(-1), /^\(total\),,,,,[0-9]+\.[0-9]{2},[0-9]+\.[0-9]{2},USD$/, 'a total rounded to the cent');
  const cpu = lines.find((l) => l.startsWith(`${slug},requests.cpu,`));
  assert.ok(cpu, `the CSV has ${slug}'s CPU: ${csv}`);
  // The portal's own sampler may add a sample meanwhile (nothing runs in the
  // cluster, so it reports no use): allocations are exact, use at most this.
  assert.match(cpu, new RegExp(`^${slug},requests\\.cpu,core-hours,6\\.0[0-9]{5},[0-2]\\.[0-9]{6},0\\.24[0-9]{4},0\\.0[0-8][0-9]{4},USD$`));
});

step("the owner sees the tenant's cost and utilisation on its page", async () => {
  assert.ok(ready, 'needs the prices and the history of the first step');
  const alice = await newBrowser();
  await loginAs(alice.page, 'alice');
  const { page } = alice;
  await page.goto(`/tenants/${slug}`);
  const said = (await page.locator('#tenant-cost').innerText()).trim();
  assert.match(said, /reserved 0\.3[01] USD and used [0-9.]+ USD/);
  const memory = page.locator('#utilisation tr', { hasText: 'requests.memory' }).filter({ hasText: 'app' });
  assert.equal(await memory.count(), 1);
  assert.match(await memory.innerText(), /25\.0%/, 'memory p95: 1Gi of 4Gi');
  await screenshot(page, 'tenant-cost.png');
  await send(admin.page, 'DELETE', `/tenants/${slug}`);
});
