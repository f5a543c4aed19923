// The HTTP API a backend acts on the broker with: the API key (401 without, 403 wrong), broadcast
// and batch reaching phoenix.js clients, exclusion of a socket id, disconnect closing every socket
// of an id (1001, as Phoenix), presence listing matching what clients see, counts, and clear JSON
// errors.
import { test, describe, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { Presence } from "phoenix";
import { startServer, phxSocket, receive, nextEvent, until, closeAll, sleep, metric, configFile, phoenixToken, TEST_SECRET_KEY_BASE, T } from "./harness.mjs";

const KEY = "api-key-0123456789abcdef";
const SECRET = TEST_SECRET_KEY_BASE;

const token = (userId) => phoenixToken(userId);

describe("HTTP API", () => {
  let server;
  const api = (path, { method = "POST", body, key = KEY, raw } = {}) =>
    fetch(`${server.http}/api${path}`, {
      method,
      headers: { "content-type": "application/json", ...(key ? { authorization: `Bearer ${key}` } : {}) },
      body: raw ?? (body === undefined ? undefined : JSON.stringify(body)),
    }).then(async (r) => ({ status: r.status, body: await r.json() }));

  before(async () => {
    server = await startServer(undefined, ["--config", configFile(`
[auth]
kind = "phoenix_token"
secret_key_base = "${SECRET}"
salt = "user socket"

[api]
key = "${KEY}"
`)]);
  });
  after(async () => { await closeAll(); await server.stop(); });
  afterEach(closeAll);

  const user = async (id, topic) => {
    const socket = phxSocket(server, { params: { token: token(id) } });
    const channel = socket.channel(topic, { name: id });
    await receive(channel.join());
    return { socket, channel };
  };

  test("no key is 401, a wrong key 403, both with a JSON error", T, async () => {
    const none = await api("/stats", { method: "GET", key: null });
    assert.equal(none.status, 401);
    assert.match(none.body.error, /API key/);
    const wrong = await api("/stats", { method: "GET", key: "wrong-key-wrong-key" });
    assert.equal(wrong.status, 403);
    const xkey = await fetch(`${server.http}/api/stats`, { headers: { "x-api-key": KEY } });
    assert.equal(xkey.status, 200);
  });

  test("broadcast and batch reach phoenix.js clients; exclude_socket_id skips a user's sockets", T, async () => {
    const a = await user("ann", "news:1");
    const b = await user("bob", "news:1");
    const gotA = nextEvent(a.channel, "headline");
    const gotB = nextEvent(b.channel, "headline");
    assert.deepEqual(await api("/broadcast", { body: { topic: "news:1", event: "headline", payload: { t: 1 } } }), { status: 200, body: { ok: true } });
    assert.deepEqual(await gotA, { t: 1 });
    assert.deepEqual(await gotB, { t: 1 });
    const seenByAnn = [];
    a.channel.on("only_others", (m) => seenByAnn.push(m));
    const bobGets = nextEvent(b.channel, "only_others");
    await api("/broadcast", { body: { topic: "news:1", event: "only_others", payload: {}, exclude_socket_id: "user_socket:ann" } });
    await bobGets;
    const b2 = nextEvent(b.channel, "b2");
    const batch = await api("/broadcasts", { body: { messages: [
      { topic: "news:1", event: "b1", payload: { n: 1 } },
      { topic: "news:1", event: "b2", payload: { n: 2 } },
    ] } });
    assert.deepEqual(batch, { status: 200, body: { ok: true, count: 2 } });
    assert.deepEqual(await b2, { n: 2 });
    assert.equal(seenByAnn.length, 0, "ann's socket was excluded");
  });

  test("disconnect closes every socket of an id (1001), and the others stay", T, async () => {
    const tab1 = await user("cat", "room:d");
    const tab2 = await user("cat", "room:d");
    const other = await user("dan", "room:d");
    const codes = [];
    tab1.socket.onClose((e) => codes.push(e.code));
    tab2.socket.onClose((e) => codes.push(e.code));
    let otherClosed = false;
    other.socket.onClose(() => { otherClosed = true; });
    assert.deepEqual(await api("/disconnect", { body: { socket_id: "user_socket:cat" } }), { status: 200, body: { ok: true } });
    await until(() => codes.length >= 2, 3000, "both of cat's sockets closed");
    assert.deepEqual(codes.slice(0, 2), [1001, 1001]);
    await sleep(100);
    assert.equal(otherClosed, false);
    await receive(other.channel.push("still", {}));
  });

  test("presence listing matches what clients see, and counts are given", T, async () => {
    const e = await user("eve", "room:p");
    const fs = phxSocket(server, { params: { token: token("fay") } });
    const f = { channel: fs.channel("room:p", { name: "fay" }) };
    const presence = new Presence(f.channel);
    await receive(f.channel.join());
    await until(() => presence.list().length === 2, 3000, "both listed");
    const listed = await api(`/presence/${encodeURIComponent("room:p")}`, { method: "GET" });
    assert.equal(listed.status, 200);
    assert.equal(listed.body.topic, "room:p");
    const mine = presence.list((key, { metas }) => [key, metas.map((m) => m.phx_ref)]).sort();
    const theirs = Object.entries(listed.body.presences).map(([key, { metas }]) => [key, metas.map((m) => m.phx_ref)]).sort();
    assert.deepEqual(theirs, mine);
    const stats = await api("/stats", { method: "GET" });
    assert.equal(stats.status, 200);
    assert.ok(stats.body.connections >= 2 && stats.body.channels >= 2 && stats.body.topics >= 1, JSON.stringify(stats.body));
    assert.equal(typeof stats.body.longpoll_sessions, "number");
    // The Prometheus exposition counts what went out.
    assert.ok((await metric(server, "phx_broker_messages_out_total")) > 0);
    assert.ok((await metric(server, "phx_broker_bytes_out_total")) > 0);
    void e;
  });

  test("bad requests get a clear JSON error and status", T, async () => {
    assert.equal((await api("/broadcast", { raw: "{nope" })).status, 400);
    const missing = await api("/broadcast", { body: { topic: "t" } });
    assert.equal(missing.status, 400);
    assert.match(missing.body.error, /missing field/);
    const notObject = await api("/broadcast", { body: { topic: "t", event: "e", payload: [1] } });
    assert.equal(notObject.status, 400);
    assert.match(notObject.body.error, /object/);
    const badBatch = await api("/broadcasts", { body: { messages: [{ topic: "t", event: "e", payload: {} }, { topic: "", event: "e", payload: {} }] } });
    assert.equal(badBatch.status, 400);
    assert.match(badBatch.body.error, /messages\[1\]/);
    assert.equal((await api("/broadcast", { method: "GET" })).status, 405);
    assert.equal((await api("/nowhere", { method: "GET" })).status, 404);
    const big = await api("/broadcast", { body: { topic: "t", event: "e", payload: { b: "x".repeat(17 << 20) } } });
    assert.equal(big.status, 413);
  });
});
