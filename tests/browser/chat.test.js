// End-to-end test of the browser client in headless Chromium against two real
// nodes, started by e2e/browser_test.go, which passes:
//   PARLEY_NODE1    http://127.0.0.1:PORT  (gateway, fanout, projector)
//   PARLEY_NODE2    http://127.0.0.1:PORT  (gateway)
//   PARLEY_NODE3    http://127.0.0.1:PORT  (gateway without dev auth)
//   PARLEY_FOREIGN  127.0.0.1:PORT         (a listener no node lists: the host a
//                                           crafted ?nodes= link names)
//   PARLEY_CONTROL  http://127.0.0.1:PORT  (POST /stop/node2 stops node 2;
//                                           GET /foreign counts connections there)
// Nodes 1 and 2 list each other (CHAT_WEB_NODES).
//   PARLEY_OUTPUT   folder for screenshots
// The steps share one scenario and run in order.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

const need = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set: run this through go test ./e2e -run Browser`);
  return v;
};
const NODE1 = need('PARLEY_NODE1');
const NODE2 = need('PARLEY_NODE2');
const NODE3 = need('PARLEY_NODE3');
const FOREIGN = need('PARLEY_FOREIGN');
const CONTROL = need('PARLEY_CONTROL');
const OUT = process.env.PARLEY_OUTPUT || path.resolve('test-output/browser');
const CHROMIUM = process.env.PARLEY_CHROMIUM || '/usr/bin/chromium';
const T = 30000; // per wait: generous, the machine may be busy
const host = (u) => new URL(u).host;

mkdirSync(OUT, { recursive: true });

let browser;
const pages = {}; // user → page
const problems = []; // console errors, page errors, CSP violations
const sockets = []; // every WebSocket a page opened: {user, url}
let title; // the group's title

async function openAs(user, url, viewport = { width: 1180, height: 760 }) {
  const ctx = await browser.newContext({ viewport, deviceScaleFactor: 1, colorScheme: 'light' });
  const page = await ctx.newPage();
  page.on('pageerror', (e) => problems.push(`${user}: page error: ${e.message}`));
  page.on('websocket', (ws) => sockets.push({ user, url: ws.url() }));
  page.on('console', (m) => {
    // The page never puts a token in a URL; should one appear, keep it out of logs.
    const text = m.text().replace(/access_token=[^'"&\s]+/g, 'access_token=REDACTED');
    if (m.type() === 'error') problems.push(`${user}: console: ${text} @ ${m.location().url}`);
  });
  await page.goto(url);
  return page;
}

async function signIn(page, user) {
  await page.locator('#signin-user').waitFor({ state: 'visible', timeout: T });
  await page.fill('#signin-user', user);
  await page.press('#signin-user', 'Enter');
  await online(page);
}

async function online(page, node) {
  await page.waitForFunction(
    (n) => {
      const el = document.querySelector('#conn-state');
      return el?.dataset.state === 'online' && (!n || el.dataset.node === n);
    },
    node ?? null,
    { timeout: T },
  );
}

const convItem = (page, name) => page.locator('.conv-item', { has: page.locator('.conv-name', { hasText: name }) });
const bodies = (page, text) => page.locator('#message-list .msg:not(.pending) .body', { hasText: text });

async function send(page, text) {
  await page.fill('#composer-input', text);
  await page.press('#composer-input', 'Enter');
}

// The text of every confirmed message, in display order.
const shownBodies = (page) =>
  page.$$eval('#message-list .msg:not(.pending)', (els) => els.map((e) => ({ id: e.dataset.messageId, body: e.querySelector('.body').textContent })));

async function shot(page, name) {
  await page.screenshot({ path: path.join(OUT, `${name}.png`), animations: 'disabled' });
}

before(async () => {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // launch() gives the browser a fresh temporary user-data dir.
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-quic',
      '--no-first-run',
    ],
  });
});

after(async () => {
  await browser?.close();
});

// The sources of one directive of a CSP.
const directive = (csp, name) =>
  csp
    .split(';')
    .map((d) => d.trim().split(/\s+/))
    .find((d) => d[0] === name)
    ?.slice(1);

// How many connections the foreign host has had.
const foreignConnections = async () => (await (await fetch(`${CONTROL}/foreign`)).json()).connections;

test('the client is served with a strict CSP and no inline script', async () => {
  const r = await fetch(`${NODE1}/`);
  assert.equal(r.status, 200);
  const csp = r.headers.get('content-security-policy') || '';
  assert.match(csp, /script-src 'self'/);
  assert.doesNotMatch(csp, /unsafe-inline/);
  // Connections only to the page's own node and the one it lists: no
  // blanket ws: or wss:, so a script could not reach another host either.
  assert.deepEqual(directive(csp, 'connect-src'), ["'self'", `ws://${host(NODE2)}`]);
  for (const [node, other] of [[NODE2, NODE1], [NODE3, null]]) {
    const r = await fetch(`${node}/`);
    const want = other ? ["'self'", `ws://${host(other)}`] : ["'self'"];
    assert.deepEqual(directive(r.headers.get('content-security-policy') || '', 'connect-src'), want, node);
    const cfg = await (await fetch(`${node}/config.json`)).json();
    assert.deepEqual(cfg.nodes, other ? [`ws://${host(other)}/ws`] : [], `${node}/config.json`);
  }
  const html = await r.text();
  assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/, 'no inline <script>');
  assert.doesNotMatch(html, /\sstyle=/, 'no inline style attribute');
  assert.doesNotMatch(html, /\son[a-z]+=/, 'no inline event handler');
});

test('alice (node 1) and bob (node 2) sign in with the dev token form', async () => {
  pages.alice = await openAs('alice', `${NODE1}/`);
  // Bob's link names a foreign host besides node 1: the page ignores it.
  pages.bob = await openAs('bob', `${NODE2}/?nodes=${FOREIGN},${host(NODE1)}`);
  await pages.alice.locator('#signin-user').waitFor({ state: 'visible', timeout: T });
  await shot(pages.alice, 'client-signin');
  await signIn(pages.alice, 'alice');
  await signIn(pages.bob, 'bob');
  assert.equal(await pages.alice.getAttribute('#conn-state', 'data-node'), host(NODE1));
  assert.equal(await pages.bob.getAttribute('#conn-state', 'data-node'), host(NODE2));
});

test('alice creates a group with bob; it appears on both sides', async () => {
  const { alice, bob } = pages;
  title = 'Weekend plans';
  await alice.click('#new-conv');
  await alice.click('label[for=kind-group]');
  assert.equal(await alice.isChecked('#kind-group'), true);
  await alice.fill('#new-title', title);
  await alice.fill('#new-members', 'bob');
  await shot(alice, 'client-new-conversation');
  await alice.click('#form-new button[type=submit]');
  await alice.locator('#conv-title', { hasText: title }).waitFor({ timeout: T });
  await convItem(bob, title).waitFor({ timeout: T });
  assert.match(await alice.textContent('#conv-sub'), /2 members/);
});

test('bob sees alice online: a green dot on their group', async () => {
  const { bob } = pages;
  await convItem(bob, title).locator('.presence-dot[data-online~="alice"]').waitFor({ timeout: T });
  assert.match(await convItem(bob, title).getAttribute('aria-label'), /online/);
  await shot(bob, 'client-presence');
});

test('a message shows on the other node with an unread badge that clears when read', async () => {
  const { alice, bob } = pages;
  await send(alice, 'Hi Bob! Are we still on for Saturday?');
  await bodies(alice, 'Are we still on').waitFor({ timeout: T });
  const badge = convItem(bob, title).locator('.badge');
  await badge.waitFor({ timeout: T });
  assert.equal((await badge.textContent()).trim(), '1');
  assert.match(await convItem(bob, title).locator('.conv-preview').textContent(), /alice: Hi Bob!/);
  await shot(bob, 'client-unread');

  await convItem(bob, title).click();
  await bodies(bob, 'Are we still on').waitFor({ timeout: T });
  await badge.waitFor({ state: 'detached', timeout: T });
  // Bob's read receipt reaches alice through node 1.
  await alice.locator('.receipt.seen', { hasText: 'Seen by bob' }).waitFor({ timeout: T });
});

test('typing shows on the other side; Shift+Enter makes a new line', async () => {
  const { alice, bob } = pages;
  await bob.click('#composer-input');
  await bob.keyboard.type('Yes!');
  await alice.locator('#typing', { hasText: 'bob is typing' }).waitFor({ timeout: T });
  await bob.keyboard.press('Shift+Enter');
  await bob.keyboard.type('I will bring the snacks.');
  assert.equal(await bob.inputValue('#composer-input'), 'Yes!\nI will bring the snacks.');
  await bob.keyboard.press('Enter');
  assert.equal(await bob.inputValue('#composer-input'), '');
  await bodies(alice, 'I will bring the snacks.').waitFor({ timeout: T });
  assert.equal(await bodies(alice, 'I will bring the snacks.').textContent(), 'Yes!\nI will bring the snacks.');
  await alice.locator('#typing', { hasText: 'typing' }).waitFor({ state: 'detached', timeout: T }).catch(() => {});
  await alice.waitForFunction(() => !document.querySelector('#typing').textContent, null, { timeout: T });
});

test('a reaction, a reply and its thread show on the other node', async () => {
  const { alice, bob } = pages;
  const msgOf = (page, text) => page.locator('#message-list .msg', { has: page.locator('.body', { hasText: text }) });
  const target = msgOf(bob, 'Are we still on');
  await target.hover();
  await target.getByRole('button', { name: 'React to message' }).click();
  await target.getByRole('button', { name: 'React 🎉' }).click();
  const chip = msgOf(alice, 'Are we still on').locator('.reaction[data-emoji="🎉"]');
  await chip.waitFor({ timeout: T });
  assert.equal((await chip.textContent()).trim(), '🎉 1');
  assert.match(await chip.getAttribute('aria-label'), /bob/);

  await target.hover();
  await target.getByRole('button', { name: 'Reply to message' }).click();
  await bob.locator('#reply-banner').waitFor({ state: 'visible', timeout: T });
  await bob.fill('#composer-input', 'Count me in, 7 pm');
  await bob.press('#composer-input', 'Enter');
  const reply = msgOf(alice, 'Count me in, 7 pm');
  await reply.waitFor({ timeout: T });
  assert.match(await reply.locator('.quote').textContent(), /alice: Hi Bob!/);
  const link = msgOf(alice, 'Are we still on').locator('.thread-link');
  await link.waitFor({ timeout: T });
  assert.equal((await link.textContent()).trim(), '1 reply');
  await link.click();
  await alice.locator('#dlg-thread #thread-list li', { hasText: 'Count me in, 7 pm' }).waitFor({ timeout: T });
  await shot(alice, 'client-thread');
  await alice.click('#dlg-thread button[value=close]');
  await alice.locator('#dlg-thread').waitFor({ state: 'hidden', timeout: T });
});

test('search finds a message across accents and case, and opens its conversation', async () => {
  const { alice } = pages;
  await alice.fill('#search-input', 'SATURDAY');
  await alice.press('#search-input', 'Enter');
  const hit = alice.locator('#dlg-search .search-hit', { hasText: 'Are we still on for Saturday?' });
  await hit.waitFor({ timeout: T });
  await shot(alice, 'client-search');
  await hit.click();
  await alice.locator('#dlg-search').waitFor({ state: 'hidden', timeout: T });
  assert.equal(await alice.textContent('#conv-title'), title);
});

test('markup in a message renders as text', async () => {
  const { alice, bob } = pages;
  const evil = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"><b>bold?</b>';
  await send(alice, evil);
  const el = bodies(bob, '<script>window.__pwned');
  await el.waitFor({ timeout: T });
  assert.equal(await el.textContent(), evil);
  for (const page of [alice, bob]) {
    assert.equal(await page.evaluate(() => window.__pwned), undefined);
    assert.equal(await page.locator('#message-list img, #message-list script, #message-list b').count(), 0);
  }
});

test('an edit and a delete show on the other side; Esc cancels an edit', async () => {
  const { alice, bob } = pages;
  const mine = alice.locator('#message-list .msg.own', { hasText: 'Are we still on' });
  // Esc cancels.
  await mine.hover();
  await mine.getByRole('button', { name: 'Edit message' }).click();
  await alice.locator('#edit-banner').waitFor({ state: 'visible' });
  assert.equal(await alice.inputValue('#composer-input'), 'Hi Bob! Are we still on for Saturday?');
  await alice.press('#composer-input', 'Escape');
  await alice.locator('#edit-banner').waitFor({ state: 'hidden' });
  assert.equal(await alice.inputValue('#composer-input'), '');

  await mine.hover();
  await mine.getByRole('button', { name: 'Edit message' }).click();
  await alice.fill('#composer-input', 'Hi Bob! Are we still on for Sunday?');
  await alice.press('#composer-input', 'Enter');
  const edited = bob.locator('#message-list .msg', { hasText: 'still on for Sunday?' });
  await edited.locator('.edited').waitFor({ timeout: T });
  assert.equal(await bodies(bob, 'Saturday').count(), 0);

  const evil = alice.locator('#message-list .msg.own', { hasText: '<script>' });
  await evil.hover();
  await evil.getByRole('button', { name: 'Delete message' }).click();
  await alice.locator('#dlg-confirm').waitFor({ state: 'visible' });
  await alice.click('#dlg-confirm-ok');
  await bob.locator('#message-list .msg .body.deleted', { hasText: 'This message was deleted' }).waitFor({ timeout: T });
  assert.equal(await bodies(bob, '<script>').count(), 0);
  await shot(bob, 'client-conversation-bob');
});

test('readable at phone width', async () => {
  const phone = await openAs('carol', `${NODE1}/`, { width: 390, height: 780 });
  await signIn(phone, 'carol');
  // Alice adds carol to the group; carol opens it on her phone.
  const { alice } = pages;
  await alice.click('#add-member');
  await alice.fill('#add-user', 'carol');
  await alice.press('#add-user', 'Enter');
  await alice.locator('#conv-sub', { hasText: 'carol' }).waitFor({ timeout: T });
  await convItem(phone, title).waitFor({ timeout: T });
  await shot(phone, 'client-phone-list');
  await convItem(phone, title).click();
  await bodies(phone, 'Sunday').waitFor({ timeout: T });
  assert.equal(await phone.locator('.sidebar').isVisible(), false, 'one pane at a time');
  const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `no horizontal scroll at phone width (overflow ${overflow}px)`);
  await shot(phone, 'client-phone');

  // Carol leaves the group: alice sees two members again.
  await phone.getByRole('button', { name: 'Leave conversation' }).click();
  await phone.click('#dlg-confirm-ok');
  await phone.locator('.sidebar').waitFor({ state: 'visible', timeout: T });
  await convItem(phone, title).waitFor({ state: 'detached', timeout: T });
  await alice.locator('#conv-sub', { hasText: '2 members' }).waitFor({ timeout: T });

  // A direct conversation: carol writes to alice, who gets an unread badge.
  await phone.click('#new-conv');
  await phone.fill('#new-peer', 'alice');
  await phone.press('#new-peer', 'Enter');
  await phone.locator('#conv-title', { hasText: 'alice' }).waitFor({ timeout: T });
  assert.equal(await phone.textContent('#conv-sub'), 'Direct message');
  await send(phone, 'Hi Alice, it is carol. Can I join on Sunday?');
  await bodies(phone, 'Can I join on Sunday?').waitFor({ timeout: T });
  const dm = convItem(alice, 'carol');
  await dm.locator('.badge', { hasText: '1' }).waitFor({ timeout: T });
  assert.match(await dm.locator('.conv-preview').textContent(), /Can I join on Sunday\?/);
  // The same pair always gets the same conversation.
  await phone.click('#back');
  await phone.click('#new-conv');
  await phone.fill('#new-peer', 'alice');
  await phone.press('#new-peer', 'Enter');
  await bodies(phone, 'Can I join on Sunday?').waitFor({ timeout: T });
  assert.equal(await phone.locator('.conv-item').count(), 1);
  await phone.context().close();
});

test('a link naming a foreign node: the page never contacts it, and its CSP would refuse it', async () => {
  // erin opens a link that names the foreign host first, as an attacker
  // would: when node 2 goes away (a rolling deploy) the page must fail over
  // to node 1, the node the server lists, and never to the foreign host.
  const erin = await openAs('erin', `${NODE2}/?nodes=${FOREIGN},${host(NODE1)}`);
  pages.erin = erin;
  await signIn(erin, 'erin');
  assert.equal(await erin.getAttribute('#conn-state', 'data-node'), host(NODE2));
  await erin.click('#new-conv');
  await erin.click('label[for=kind-group]');
  await erin.fill('#new-title', 'Erin notes');
  await erin.fill('#new-members', 'zoe');
  await erin.click('#form-new button[type=submit]');
  await erin.locator('#conv-title', { hasText: 'Erin notes' }).waitFor({ timeout: T });
  await send(erin, 'Before the deploy');
  await bodies(erin, 'Before the deploy').waitFor({ timeout: T });

  // Even a script in the page could not open a socket there: the CSP
  // refuses it before any packet is sent. Either the refusal is reported,
  // or the foreign host gets the connection (then the CSP failed).
  const refused = erin.evaluate((foreign) => {
    return new Promise((resolve) => {
      document.addEventListener('securitypolicyviolation', (e) => resolve({ directive: e.effectiveDirective, blocked: e.blockedURI }), { once: true });
      try {
        const ws = new WebSocket(`ws://${foreign}/csp-probe`, ['parley', 'bearer.probe']);
        ws.addEventListener('error', () => {});
      } catch {
        // older browsers throw as well as report
      }
    });
  }, FOREIGN);
  let settled = false;
  const contacted = (async () => {
    while (!settled && (await foreignConnections()) === 0) await new Promise((r) => setTimeout(r, 100));
    return { contacted: !settled };
  })();
  const probe = await Promise.race([refused, contacted]);
  settled = true;
  await contacted;
  assert.equal(probe.contacted, undefined, 'the CSP let a WebSocket reach the foreign host');
  assert.equal(probe.directive, 'connect-src', JSON.stringify(probe));
  assert.ok(probe.blocked.includes(FOREIGN), JSON.stringify(probe));
  assert.equal(await foreignConnections(), 0, 'the foreign host was contacted');
});

test('after node 2 dies, bob reconnects to node 1 and gets what was sent meanwhile, once', async () => {
  const { alice, bob, erin } = pages;
  const before = await shownBodies(bob);

  // Hold bob offline so that these messages are certainly sent while his page
  // is disconnected; the node dies under it.
  await bob.context().setOffline(true);
  const r = await fetch(`${CONTROL}/stop/node2`, { method: 'POST' });
  assert.equal(r.status, 204);
  await bob.waitForFunction(() => document.querySelector('#conn-state').dataset.state !== 'online', null, { timeout: T });
  await bob.locator('#conn-banner').waitFor({ state: 'visible', timeout: T });
  await shot(bob, 'client-reconnecting');

  // erin, online, was told to go away (1012): her page moved to node 1, the
  // next node it may use, and works there; the foreign host saw nothing.
  await online(erin, host(NODE1));
  await send(erin, 'After the deploy');
  await bodies(erin, 'After the deploy').waitFor({ timeout: T });
  assert.deepEqual((await shownBodies(erin)).map((m) => m.body), ['Before the deploy', 'After the deploy']);
  assert.equal(await foreignConnections(), 0, 'the foreign host was contacted');

  const meanwhile = ['The cabin is booked.', 'The trail opens at 9, so let us meet at 8:30.', 'Do not forget your boots!'];
  for (const text of meanwhile) {
    await send(alice, text);
    await bodies(alice, text).waitFor({ timeout: T });
  }
  await bob.context().setOffline(false);
  await online(bob, host(NODE1));
  for (const text of meanwhile) await bodies(bob, text).waitFor({ timeout: T });

  // And live messages keep coming over the new node.
  await send(alice, 'Did you get all that?');
  await bodies(bob, 'Did you get all that?').waitFor({ timeout: T });
  await send(bob, 'Got all three, thanks!');
  await bodies(alice, 'Got all three').waitFor({ timeout: T });
  // Alice's push can beat bob's ack: wait until bob's own copy is no longer pending.
  await bodies(bob, 'Got all three').waitFor({ timeout: T });

  const shown = await shownBodies(bob);
  const ids = shown.map((m) => m.id);
  assert.equal(new Set(ids).size, ids.length, 'no message twice');
  for (const text of [...meanwhile, 'Did you get all that?']) {
    assert.equal(shown.filter((m) => m.body === text).length, 1, `"${text}" once`);
  }
  assert.deepEqual(shown.slice(0, before.length).map((m) => m.id), before.map((m) => m.id), 'nothing dropped or reordered');
  assert.deepEqual(shown.map((m) => m.id), (await shownBodies(alice)).map((m) => m.id), 'both sides show the same messages');
  assert.equal(await bob.locator('#conn-banner').isVisible(), false);

  // The picture for docs/client.md: bob is typing, alice sees it.
  await bob.fill('#composer-input', 'See you');
  await bob.press('#composer-input', 'End');
  await bob.keyboard.type('!');
  await alice.locator('#typing', { hasText: 'bob is typing' }).waitFor({ timeout: T });
  await alice.mouse.move(160, 600); // off the buttons, so nothing shows hovered
  await shot(alice, 'client-conversation');
  await alice.emulateMedia({ colorScheme: 'dark' });
  await shot(alice, 'client-conversation-dark');
  await alice.emulateMedia({ colorScheme: 'light' });
  await bob.fill('#composer-input', '');
});

test('scrolling up loads older history', async () => {
  const { alice } = pages;
  // 70 more messages through the HTTP API (for bots), then a fresh page.
  const { token } = await (await fetch(`${NODE1}/api/v1/dev/token`, { method: 'POST', body: JSON.stringify({ user_id: 'alice' }) })).json();
  const convId = await alice.getAttribute('.conv-item.active', 'data-conversation-id');
  for (let i = 1; i <= 70; i++) {
    const r = await fetch(`${NODE1}/api/v1/conversations/${convId}/messages`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ client_msg_id: `bulk-${i}`, body: `Bulk message ${i}` }),
    });
    assert.equal(r.status, 201);
  }
  await bodies(alice, 'Bulk message 70').waitFor({ timeout: T });
  const fresh = await openAs('alice2', `${NODE1}/`, { width: 900, height: 700 });
  await signIn(fresh, 'alice');
  await convItem(fresh, title).click();
  await bodies(fresh, 'Bulk message 70').waitFor({ timeout: T });
  const first = await fresh.locator('#message-list .msg:not(.pending)').count();
  assert.ok(first <= 60, `first page is bounded (${first})`);
  // Scroll to the top until the first message of the conversation shows.
  const count = () => fresh.locator('#message-list .msg:not(.pending)').count();
  for (let i = 0; i < 10 && !(await bodies(fresh, 'Are we still on').count()); i++) {
    const n = await count();
    await fresh.evaluate(() => (document.querySelector('#messages').scrollTop = 0));
    await fresh.waitForFunction((n) => document.querySelectorAll('#message-list .msg:not(.pending)').length > n, n, { timeout: T });
  }
  await bodies(fresh, 'Are we still on').waitFor({ timeout: T });
  await fresh.locator('#history-state', { hasText: 'beginning of the conversation' }).waitFor({ timeout: T });
  // Receipts on a fresh page come from the read cursors in the list.
  await fresh.locator('.receipt.seen', { hasText: 'Seen by bob' }).waitFor({ timeout: T });
  const all = await shownBodies(fresh);
  assert.equal(new Set(all.map((m) => m.id)).size, all.length, 'no message twice');
  assert.equal(all.filter((m) => /^Bulk message \d+$/.test(m.body)).length, 70);
  await fresh.context().close();
});

test('without dev auth the page asks for a token; sign out returns to it', async () => {
  const r = await fetch(`${NODE3}/api/v1/dev/token`, { method: 'POST', body: JSON.stringify({ user_id: 'dave' }) });
  assert.equal(r.status, 404);
  assert.equal((await r.json()).error.code, 'not_found');
  const { token } = await (await fetch(`${NODE1}/api/v1/dev/token`, { method: 'POST', body: JSON.stringify({ user_id: 'dave' }) })).json();
  const page = await openAs('dave', `${NODE3}/`);
  await page.locator('#signin-jwt').waitFor({ state: 'visible', timeout: T });
  assert.equal(await page.locator('#signin-user').isVisible(), false);
  await page.fill('#signin-jwt', 'not-a-token');
  await page.click('#signin-token button[type=submit]');
  await page.locator('#signin-error', { hasText: 'not a JWT' }).waitFor({ timeout: T });
  await page.fill('#signin-jwt', token);
  await page.click('#signin-token button[type=submit]');
  await online(page, host(NODE3));
  assert.match(await page.textContent('#me'), /dave/);
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.locator('#signin-jwt').waitFor({ state: 'visible', timeout: T });
  await page.context().close();
});

test('every socket went to a listed node, with no token in its URL; the foreign host saw nothing', async () => {
  const listed = new Set([host(NODE1), host(NODE2), host(NODE3)]);
  const probe = `ws://${FOREIGN}/csp-probe`;
  const opened = sockets.filter((s) => s.url !== probe);
  assert.ok(opened.some((s) => s.user === 'erin' && host(s.url) === host(NODE1)), 'erin failed over to node 1');
  for (const s of opened) {
    const u = new URL(s.url);
    assert.ok(listed.has(u.host), `${s.user} opened a socket to ${u.host}`);
    assert.equal(u.pathname, '/ws');
    assert.equal(u.search, '', `${s.user}: a query on the socket URL`);
  }
  assert.equal(await foreignConnections(), 0, 'the foreign host was contacted');
});

test('no console errors, page errors or CSP violations', () => {
  // Expected: connection errors from the stopped node and the offline spell,
  // node 3's 404 for the dev token (that is how the page detects it), and
  // the CSP refusing erin's deliberate probe of the foreign host.
  const foreign = FOREIGN.replace(/[.]/g, '\\.');
  const expected = [
    /WebSocket connection to .* failed/,
    /ERR_INTERNET_DISCONNECTED|ERR_CONNECTION_REFUSED/,
    /^dave: console: Failed to load resource: .*404.* @ .*\/api\/v1\/dev\/token$/,
    // Chromium's wording has changed over versions.
    new RegExp(`^erin: console: (Refused to connect to|Connecting to) 'ws://${foreign}/csp-probe' (because it )?violates .*connect-src`),
  ];
  const real = problems.filter((p) => !expected.some((re) => re.test(p)));
  if (problems.length) console.log(`browser console (${problems.length}):\n  ${problems.join('\n  ')}`);
  assert.deepEqual(real, []);
});
