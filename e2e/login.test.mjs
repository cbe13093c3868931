// Signing in through Dex in a real browser.
import assert from 'node:assert/strict';
import { after } from 'node:test';
import { api, closeAll, loginAs, newBrowser, step } from './lib.mjs';

after(closeAll);

step('signing in through Dex brings the browser back to the portal with a session', async (t) => {
  const { page, close } = await newBrowser();
  t.after(close);
  const email = await loginAs(page, 'alice', { start: '/auth/login?return_to=/' });
  assert.equal(new URL(page.url()).pathname, '/');
  const me = await api(page, '/me');
  assert.equal(me.kind, 'user');
  assert.equal(me.email, email);
  assert.ok(me.groups.includes('team-acme'), `alice's groups: ${me.groups}`);
  assert.equal(me.admin, false);
});

step('the session cookie is HttpOnly and SameSite=Lax', async (t) => {
  const { context, page, close } = await newBrowser();
  t.after(close);
  await loginAs(page, 'carol', { start: '/auth/login?return_to=/' });
  const portal = (await context.cookies()).filter((c) => c.domain === '127.0.0.1' && c.value !== '');
  assert.ok(portal.length > 0, 'no cookie was set by the portal');
  for (const cookie of portal) {
    assert.equal(cookie.httpOnly, true, `${cookie.name} is not HttpOnly`);
    assert.equal(cookie.sameSite, 'Lax', `${cookie.name} is SameSite=${cookie.sameSite}`);
  }
});

step('an admin signs in with admin rights', async (t) => {
  const { page, close } = await newBrowser();
  t.after(close);
  await loginAs(page, 'admin', { start: '/auth/login?return_to=/' });
  const me = await api(page, '/me');
  assert.equal(me.admin, true);
});

step('a browser without a session opening / is sent to sign in, and comes back to /', async (t) => {
  const { page, close } = await newBrowser();
  t.after(close);
  await loginAs(page, 'bob');
  assert.equal(new URL(page.url()).pathname, '/');
});
