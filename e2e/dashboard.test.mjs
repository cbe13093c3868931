// The dashboard, as an owner (alice), a platform admin and an outsider (bob)
// use it: one tenant's life from the create form to its deletion. The steps
// run in order and build on each other; a step whose predecessor failed fails
// too, naming what it is missing.
import assert from 'node:assert/strict';
import { after } from 'node:test';
import { api, closeAll, loginAs, newBrowser, screenshot, step, submit, uniqueSlug } from './lib.mjs';

after(closeAll);

const slug = uniqueSlug();
let alice; // alice's browser, signed in for the whole journey
let signedIn = false;
let created = false;
let requested = false;
let approved = false;

function needs(done, what) {
  assert.ok(done, `this step needs ${what}, which an earlier step did not get to`);
}

function button(scope, name) {
  return scope.getByRole('button', { name, exact: true });
}

async function expectText(locator, pattern, timeout = 5_000) {
  locator = locator.first();
  const deadline = Date.now() + timeout;
  let text = '';
  while (Date.now() < deadline) {
    text = (await locator.innerText().catch(() => '')).trim();
    if (pattern.test(text)) return text;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`expected ${pattern} in ${locator}, found: ${JSON.stringify(text.slice(0, 300))}`);
}

step('an owner signs in and the home page says "Your tenants"', async () => {
  alice = await newBrowser();
  await loginAs(alice.page, 'alice');
  signedIn = true;
  const { page } = alice;
  assert.equal(new URL(page.url()).pathname, '/');
  assert.equal((await page.locator('h1').innerText()).trim(), 'Your tenants');
});

step('the create form shows each error beside its field, keeps what was typed and answers 422', async () => {
  needs(signedIn, 'alice signed in');
  const { page } = alice;
  await page.getByRole('link', { name: 'New tenant' }).click();
  await page.waitForURL('**/tenants/new');
  for (const name of ['slug', 'display_name', 'description', 'namespaces', 'budget_cpu', 'budget_memory', 'budget_pods']) {
    const labels = await page.locator(`form [name="${name}"]`).evaluate((el) => el.labels?.length ?? 0);
    assert.ok(labels > 0, `the input ${name} has no <label>`);
  }
  await page.fill('[name=slug]', 'Bad Slug!');
  await page.fill('[name=display_name]', 'E2E Acme');
  await page.fill('[name=namespaces]', 'dev, prod');
  await page.fill('[name=budget_cpu]', 'lots');
  await page.fill('[name=budget_memory]', '4Gi');
  await page.fill('[name=budget_pods]', '10');
  const response = await submit(page, button(page, 'Create tenant'));

  assert.equal(response.status(), 422);
  await expectText(page.locator('[data-field=slug] .field-error'), /\S/);
  await expectText(page.locator('[data-field=budget_cpu] .field-error'), /\S/);
  assert.equal(await page.locator('[data-field=display_name] .field-error').count(), 0, 'a valid field shows an error');
  assert.equal(await page.inputValue('[name=slug]'), 'Bad Slug!');
  assert.equal(await page.inputValue('[name=budget_cpu]'), 'lots');
  assert.equal(await page.inputValue('[name=display_name]'), 'E2E Acme');
  assert.equal(await page.inputValue('[name=namespaces]'), 'dev, prod');
  await screenshot(page, 'create-form-errors.png');
});

step('a valid create form lands on the new tenant\'s page', async () => {
  needs(signedIn, 'alice signed in');
  const { page } = alice;
  if (!page.url().endsWith('/tenants/new')) await page.goto('/tenants/new');
  await page.fill('[name=slug]', slug);
  await page.fill('[name=display_name]', 'E2E Acme');
  await page.fill('[name=description]', 'Made by the browser tests');
  await page.fill('[name=namespaces]', 'dev, prod');
  await page.fill('[name=budget_cpu]', '2');
  await page.fill('[name=budget_memory]', '4Gi');
  await page.fill('[name=budget_pods]', '10');
  const response = await submit(page, button(page, 'Create tenant'));

  assert.equal(response.status(), 200);
  assert.equal(new URL(page.url()).pathname, `/tenants/${slug}`);
  created = true;
});

step('the tenant page turns from Pending to Ready without a reload', async (t) => {
  needs(created, 'the tenant created from the form');
  const { page } = alice;
  const first = (await page.locator('#sync-status').innerText()).trim();
  t.diagnostic(`#sync-status first read "${first}"`);
  assert.match(first, /Pending|Ready/);
  await page.evaluate(() => {
    window.__sameDocument = true;
  });
  await expectText(page.locator('#sync-status'), /Ready/, 30_000);
  assert.equal(await page.evaluate(() => window.__sameDocument), true, 'the page was reloaded');
  await screenshot(page, 'tenant.png');

  await page.goto('/');
  assert.ok(await page.locator(`a[href="/tenants/${slug}"]`).count(), 'home does not link to the new tenant');
  await screenshot(page, 'home.png');
});

step('the owner asks for more quota and sees the request pending', async () => {
  needs(created, 'the tenant created from the form');
  const { page } = alice;
  await page.goto(`/tenants/${slug}`);
  const form = page.locator('form#quota-request');
  await form.locator('select[name=resource]').selectOption('requests.cpu');
  await form.locator('[name=amount]').fill('4');
  await form.locator('textarea[name=reason]').fill('Load tests next week need two more cores.');
  const response = await submit(page, button(form, 'Request quota'));

  assert.equal(response.status(), 200);
  await expectText(page.locator('#quota-requests'), /requests\.cpu[\s\S]*pending|pending[\s\S]*requests\.cpu/i);
  requested = true;
});

step('an admin approves a smaller amount from the queue, and sees the clusters', async (t) => {
  needs(requested, 'the quota request made by the owner');
  const admin = await newBrowser();
  t.after(admin.close);
  const { page } = admin;
  await loginAs(page, 'admin');
  const queue = await page.goto('/quota-requests');
  assert.equal(queue.status(), 200);
  await screenshot(page, 'quota-queue.png');

  const row = page.locator('[data-request-id]').filter({ hasText: slug });
  assert.equal(await row.count(), 1, `the queue should list one request of ${slug}`);
  assert.equal(await row.locator('[name=amount]').inputValue(), '4');
  await row.locator('[name=amount]').fill('3');
  await row.locator('[name=comment]').fill('3 for now; ask again after the load tests.');
  const response = await submit(page, button(row, 'Approve'));
  assert.equal(response.status(), 200);
  approved = true;

  const admin_page = await page.goto('/admin');
  assert.equal(admin_page.status(), 200);
  await expectText(page.locator('#clusters'), /\blocal\b/);
  await screenshot(page, 'admin-clusters.png');
});

step('the owner sees the approval and the new budget, and allocates it', async () => {
  needs(approved, 'the approval by the admin');
  const { page } = alice;
  await page.goto(`/tenants/${slug}`);
  await expectText(page.locator('#quota-requests'), /approved/i);
  const budget = (await api(page, `/tenants/${slug}`)).budget;
  assert.equal(budget['requests.cpu'], '3', `budget after approval: ${JSON.stringify(budget)}`);
  assert.equal((await page.locator('#budget [data-resource="requests.cpu"] .budget-amount').innerText()).trim(), '3');

  await page.goto(`/tenants/${slug}/edit`);
  const dev = page.locator('form[data-namespace=dev]');
  await dev.locator('[name="requests.cpu"]').fill('2.5');
  const response = await submit(page, button(dev, 'Save allocations'));
  assert.equal(response.status(), 200);
  await expectText(page.locator('[role=status], .notice'), /\S/);
  assert.equal(await page.locator('form[data-namespace=dev] [name="requests.cpu"]').inputValue(), '2500m');
  const tenant = await api(page, `/tenants/${slug}`);
  const allocations = tenant.namespaces.find((n) => n.name === 'dev').allocations;
  assert.equal(allocations['requests.cpu'], '2500m');
});

step('a display name of <script>alert(1)</script> shows as text and runs nothing', async () => {
  needs(created, 'the tenant created from the form');
  const { page, dialogs } = alice;
  const name = '<script>alert(1)</script>';
  await page.goto(`/tenants/${slug}/edit`);
  const form = page.locator('form:has([name=display_name])');
  await form.locator('[name=display_name]').fill(name);
  const response = await submit(page, button(form, 'Save'));
  assert.equal(response.status(), 200);

  await page.goto(`/tenants/${slug}`);
  assert.ok((await page.textContent('h1')).includes(name), `h1 is ${await page.textContent('h1')}`);
  await page.goto('/');
  await page.waitForTimeout(500);
  assert.deepEqual(dialogs, [], 'a dialog opened');
});

step('a user without a role in the tenant gets 404 for its pages', async (t) => {
  needs(created, 'the tenant created from the form');
  const bob = await newBrowser();
  t.after(bob.close);
  const { page } = bob;
  await loginAs(page, 'bob');
  for (const path of [`/tenants/${slug}`, `/tenants/${slug}/edit`]) {
    const response = await page.goto(path);
    assert.equal(response.status(), 404, `${path} answered ${response.status()}`);
  }
  await page.goto('/');
  assert.equal(await page.locator(`a[href="/tenants/${slug}"]`).count(), 0, "bob's home links to alice's tenant");
});

step('deleting the tenant asks for its name typed out', async () => {
  needs(created, 'the tenant created from the form');
  const { page } = alice;
  await page.goto(`/tenants/${slug}/edit`);
  const form = page.locator('form#delete-tenant');
  await form.locator('[name=confirm]').fill(`${slug}-not`);
  await submit(page, form.locator('[type=submit]'));
  await expectText(page.locator('[role=alert], form#delete-tenant .field-error'), /\S/);
  assert.equal((await api(page, `/tenants/${slug}`)).state, 'active');

  await page.locator('form#delete-tenant [name=confirm]').fill(slug);
  await submit(page, page.locator('form#delete-tenant [type=submit]'));
  assert.equal(new URL(page.url()).pathname, '/');
  const row = page.locator(':is(tr, li, article, section)').filter({ has: page.locator(`a[href="/tenants/${slug}"]`) });
  await expectText(row.last(), /deleting|deleted/i);
  assert.match((await api(page, `/tenants/${slug}`)).state, /^(deleting|deleted)$/);
});
