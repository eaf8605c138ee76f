// Unit tests of the client's node list (transport/web/static/js/conn.js): the
// page connects to its own node and to those the server lists, and ?nodes=
// can only choose among those.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backoffDelay, nodeList, wsURL } from '../../transport/web/static/js/conn.js';

const at = (href) => {
  const u = new URL(href);
  return { host: u.host, protocol: u.protocol, search: u.search };
};
const listed = ['ws://node2.test:8081/ws', 'ws://node3.test/ws'];

test('without ?nodes= the page uses its own node, then every listed one', () => {
  assert.deepEqual(nodeList(at('http://node1.test:8080/'), listed), ['ws://node1.test:8080/ws', ...listed]);
  assert.deepEqual(nodeList(at('http://node1.test:8080/')), ['ws://node1.test:8080/ws'], 'nothing listed: own node only');
});

test('the own node is listed once, first, even when the server lists it too', () => {
  assert.deepEqual(nodeList(at('http://node2.test:8081/'), listed), ['ws://node2.test:8081/ws', 'ws://node3.test/ws']);
});

test('an https page uses wss', () => {
  assert.deepEqual(nodeList(at('https://node1.test/'), ['wss://node2.test/ws']), ['wss://node1.test/ws', 'wss://node2.test/ws']);
  assert.equal(wsURL('https://node2.test/anything'), 'wss://node2.test/ws');
});

test('a host in ?nodes= that the server does not list is never used', () => {
  for (const q of ['evil.example', 'ws://evil.example/ws', 'https://evil.example', 'evil.example,node2.test:8081', 'node2.test:8081@evil.example', 'not a host', '%']) {
    const nodes = nodeList(at(`http://node1.test:8080/?nodes=${encodeURIComponent(q)}`), listed);
    assert.ok(nodes.every((n) => !n.includes('evil')), `${q}: ${nodes}`);
  }
  assert.deepEqual(nodeList(at('http://node1.test:8080/?nodes=evil.example')), ['ws://node1.test:8080/ws']);
});

test('?nodes= chooses and orders among the listed nodes', () => {
  assert.deepEqual(nodeList(at('http://node1.test:8080/?nodes=node3.test,node2.test:8081'), listed), [
    'ws://node1.test:8080/ws',
    'ws://node3.test/ws',
    'ws://node2.test:8081/ws',
  ]);
  assert.deepEqual(nodeList(at('http://node1.test:8080/?nodes=evil.example,node3.test'), listed), ['ws://node1.test:8080/ws', 'ws://node3.test/ws']);
  assert.deepEqual(nodeList(at('http://node1.test:8080/?nodes='), listed), ['ws://node1.test:8080/ws'], 'an empty ?nodes= chooses none');
});

// The first retry after a working connection is quick, later ones back off
// exponentially; a node that says "try again later" (1013: full, or Redis
// away) is never retried sooner than 2 s, even right after it opened.
test('reconnects back off, and 1013 waits at least 2 s', () => {
  for (const r of [0, 0.5, 0.999]) {
    const random = () => r;
    assert.ok(backoffDelay(1, 1006, random) < 300 + 1, 'first retry is quick');
    const d = backoffDelay(5, 1006, random);
    assert.ok(d >= 3200 && d <= 6400, `fifth retry ${d} within [cap/2, cap] of 6400`);
    assert.ok(backoffDelay(20, 1006, random) <= 15000, 'the cap holds');
    assert.ok(backoffDelay(1, 1013, random) >= 2000, '1013 waits at least 2 s');
  }
});
