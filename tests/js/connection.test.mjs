// Checklist §11 items 1-18 (connection), 110 (origin cases of §12.5) and 112 (idle timeout,
// inbound-only rule).
import { test, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import {
  T, V1, V2, startConformance, withConformance, closeAll, connect, rawClient, observer, phxSocket, receive,
  handshake, acceptKey, sleep, until,
} from "./harness.mjs";

let server;
before(async () => { server = await startConformance(); });
after(async () => { await closeAll(); await server.stop(); });
afterEach(closeAll);

test("11.1 GET /socket/websocket?vsn=2.0.0 with valid upgrade headers → 101", T, async () => {
  const r = await handshake(server, { query: "vsn=2.0.0" });
  assert.equal(r.status, 101);
  assert.equal(r.headers.upgrade?.toLowerCase(), "websocket");
  assert.equal(r.headers["sec-websocket-accept"], acceptKey(r.key));
  // …and the official client connects and joins over it.
  const socket = phxSocket(server);
  const ch = socket.channel("room:1", {});
  assert.deepEqual(await receive(ch.join()), {});
});

test("11.2 no vsn param → V1 (object frames) for that socket", T, async () => {
  const c = await connect(server, V1, { query: "" });
  c.push("1", "1", "room:1", "phx_join", {});
  const f = await c.next();
  assert.deepEqual(f, { topic: "room:1", event: "phx_reply", payload: { status: "ok", response: {} }, ref: "1" });
  assert.ok(!Array.isArray(f));
});

for (const vsn of ["3.0.0", "2.0", "2", "1.1.0", "2.1.0", "x"]) {
  test(`11.3 vsn=${vsn} → 403, empty body, no upgrade`, T, async () => {
    const r = await handshake(server, { query: `vsn=${vsn}` });
    assert.equal(r.status, 403);
    assert.equal(r.body, "");
  });
}

test("11.3 vsn=2.0.1 and 1.0.5 (same MAJOR.MINOR) are accepted", T, async () => {
  assert.equal((await handshake(server, { query: "vsn=2.0.1" })).status, 101);
  assert.equal((await handshake(server, { query: "vsn=1.0.5" })).status, 101);
});

test("11.4 connect returning error → 403, empty body", T, async () => {
  const r = await handshake(server, { query: "reject=1&vsn=2.0.0" });
  assert.equal(r.status, 403);
  assert.equal(r.body, "");
});

test("11.5 connect returning {error, reason} with a custom handler → handler's status (429)", T, async () => {
  const r = await handshake(server, { query: "reject=429&vsn=2.0.0" });
  assert.equal(r.status, 429);
});

test("11.6 Origin host different from the configured host (check_origin true) → 403", T, async () => {
  await withConformance('check_origin = true\nurl_host = "example.com"', async (s) => {
    const bad = await handshake(s, { headers: { Origin: "https://evil.com" } });
    assert.equal(bad.status, 403);
    assert.equal(bad.body, "");
    assert.equal((await handshake(s, { headers: { Origin: "https://sub.example.com" } })).status, 403);
    // Only the host is compared: scheme and port may differ.
    assert.equal((await handshake(s, { headers: { Origin: "http://example.com:1234" } })).status, 101);
  });
});

test("11.7 no Origin header → the origin check is not applied", T, async () => {
  await withConformance('check_origin = true\nurl_host = "example.com"', async (s) => {
    assert.equal((await handshake(s, {})).status, 101);
  });
});

test('11.8 origin list ["https://example.com"]: :8443 rejected, https://example.com accepted', T, async () => {
  await withConformance('check_origin = ["https://example.com"]', async (s) => {
    assert.equal((await handshake(s, { headers: { Origin: "https://example.com:8443" } })).status, 403);
    assert.equal((await handshake(s, { headers: { Origin: "http://example.com" } })).status, 403);
    assert.equal((await handshake(s, { headers: { Origin: "https://example.com" } })).status, 101);
    assert.equal((await handshake(s, { headers: { Origin: "https://example.com:443" } })).status, 101);
  });
});

test("11.9 origin entry //*.example.com accepts example.com and a.b.example.com:81", T, async () => {
  await withConformance('check_origin = ["//*.example.com"]', async (s) => {
    assert.equal((await handshake(s, { headers: { Origin: "https://example.com" } })).status, 101);
    assert.equal((await handshake(s, { headers: { Origin: "http://a.b.example.com:81" } })).status, 101);
    assert.equal((await handshake(s, { headers: { Origin: "http://badexample.com" } })).status, 403);
  });
});

test("12.110 check_origin true, URL host localhost: the §12.5 origin cases", T, async () => {
  await withConformance('check_origin = true\nurl_host = "localhost"', async (s) => {
    for (const ok of ["http://localhost", "https://localhost", "http://localhost:4103", undefined]) {
      const headers = ok ? { Origin: ok } : {};
      assert.equal((await handshake(s, { headers })).status, 101, `Origin ${ok}`);
    }
    for (const bad of ["http://127.0.0.1:4103", "http://sub.localhost", "http://evil.example"]) {
      assert.equal((await handshake(s, { headers: { Origin: bad } })).status, 403, `Origin ${bad}`);
    }
  });
});

for (const method of ["POST", "PUT", "DELETE"]) {
  test(`11.10 ${method} /socket/websocket → 400`, T, async () => {
    const r = await handshake(server, { method, upgrade: false });
    assert.equal(r.status, 400);
  });
}

test("11.11 authToken via Sec-WebSocket-Protocol: connect_info.auth_token, 'phoenix' echoed", T, async () => {
  await withConformance("auth_token = true", async (s) => {
    const r = await handshake(s, { headers: { "Sec-WebSocket-Protocol": "phoenix, base64url.bearer.phx.dG9rIGVu" } });
    assert.equal(r.status, 101);
    assert.equal(r.headers["sec-websocket-protocol"], "phoenix");
    // The conformance channel's join reply exposes connect_info.auth_token.
    const c = await connect(s, V2, { wsOpts: { protocols: ["phoenix", "base64url.bearer.phx.dG9rIGVu"] } });
    assert.equal(c.ws.protocol, "phoenix");
    c.push("1", "1", "room:11", "phx_join", {});
    await c.expectReply("1", "1", "room:11", "ok", { auth_token: "tok en" });
    // phoenix.js's authToken option does the same.
    const socket = phxSocket(s, { authToken: "tok en" });
    assert.deepEqual(await receive(socket.channel("room:11", {}).join()), { auth_token: "tok en" });
  });
});

test("11.12 subprotocols offered, none allowed by a non-empty config → 403", T, async () => {
  await withConformance('subprotocols = ["mqtt"]', async (s) => {
    const r = await handshake(s, { headers: { "Sec-WebSocket-Protocol": "foo, bar" } });
    assert.equal(r.status, 403);
    assert.equal(r.body, "");
    const ok = await handshake(s, { headers: { "Sec-WebSocket-Protocol": "foo, mqtt" } });
    assert.equal(ok.status, 101);
    assert.equal(ok.headers["sec-websocket-protocol"], "mqtt");
    const phx = await handshake(s, { headers: { "Sec-WebSocket-Protocol": "phoenix" } });
    assert.equal(phx.status, 101);
    assert.equal(phx.headers["sec-websocket-protocol"], "phoenix");
  });
  // §2.4: no allowed list configured → the header is ignored and nothing is echoed.
  const r = await handshake(server, { headers: { "Sec-WebSocket-Protocol": "foo" } });
  assert.equal(r.status, 101);
  assert.equal(r.headers["sec-websocket-protocol"], undefined);
});

test('11.13 "disconnect" broadcast to the socket id closes the socket with 1001; channels terminate', T, async () => {
  const obs = await observer(server);
  const target = await connect(server, V2, { query: "user_id=13&vsn=2.0.0" });
  await target.join("room:13a");
  const other = await connect(server, V2);
  await other.join("room:13b");
  other.push("1", "2", "room:13b", "endpoint_broadcast", { topic: "user_socket:13", event: "disconnect", payload: {} });
  await other.expectReply("1", "2", "room:13b", "ok");
  assert.equal(await target.closed(), 1001);
  assert.equal(await obs.terminated("room:13a"), "shutdown:disconnected");
  // Other sockets are unaffected.
  other.push(null, "3", "phoenix", "heartbeat", {});
  await other.expectReply(null, "3", "phoenix", "ok");
});

test('11.13 Endpoint.broadcast("user_socket:1","disconnect",{}) from outside any channel closes with 1001', T, async () => {
  const obs = await observer(server);
  const target = await connect(server, V1, { query: "user_id=13e&vsn=1.0.0" });
  await target.join("room:13e");
  const same = await connect(server, V2, { query: "user_id=13e&vsn=2.0.0" }); // every socket with that id
  const other = await connect(server, V2, { query: "user_id=13f&vsn=2.0.0" });
  server.broadcast("user_socket:13e", "disconnect", {});
  assert.equal(await target.closed(), 1001);
  assert.equal(await same.closed(), 1001);
  assert.equal(await obs.terminated("room:13e"), "shutdown:disconnected");
  other.push(null, "1", "phoenix", "heartbeat", {});
  await other.expectReply(null, "1", "phoenix", "ok");
});

test("11.13 phoenix.js sees close 1001 after a disconnect broadcast and reconnects", T, async () => {
  const socket = phxSocket(server, { params: { user_id: "13js" } });
  const ch = socket.channel("room:13js", {});
  await receive(ch.join());
  const closed = new Promise((r) => socket.onClose((e) => r(e.code)));
  const other = await connect(server, V2);
  await other.join("room:13c");
  other.push("1", "2", "room:13c", "endpoint_broadcast", { topic: "user_socket:13js", event: "disconnect", payload: {} });
  const firstJoinRef = ch.joinRef();
  assert.equal(await closed, 1001);
  // The client comes back (1001 is not a normal close) and rejoins with a new join_ref.
  await until(() => ch.state === "joined" && ch.joinRef() !== firstJoinRef, 3000, "rejoin");
});

test('11.14 a broadcast with event "other" to a socket id topic does nothing', T, async () => {
  const target = await connect(server, V2, { query: "user_id=14&vsn=2.0.0" });
  await target.join("room:14a");
  const other = await connect(server, V2);
  await other.join("room:14b");
  other.push("1", "2", "room:14b", "endpoint_broadcast", { topic: "user_socket:14", event: "other", payload: {} });
  await other.expectReply("1", "2", "room:14b", "ok");
  server.broadcast("user_socket:14", "other", {});
  server.broadcast("user_socket:14", "Disconnect", {});
  await target.expectNone(200);
  assert.ok(target.isOpen());
  target.push(null, "9", "phoenix", "heartbeat", {});
  await target.expectReply(null, "9", "phoenix", "ok");
  target.push("1", "10", "room:14a", "reply_ok", {});
  await target.expectReply("1", "10", "room:14a", "ok");
});

test("11.15 no client frames for `timeout` → closed with a non-1000 code", T, async () => {
  await withConformance("[limits]\nidle_timeout_ms = 400", async (s) => {
    const c = await rawClient(s);
    const started = Date.now();
    const code = await c.closed(3000);
    const elapsed = Date.now() - started;
    assert.notEqual(code, 1000);
    assert.equal(code, 1001);
    assert.ok(elapsed >= 300, `closed after ${elapsed} ms`);
    // A client that keeps sending (heartbeats) stays open past the timeout.
    const alive = await connect(s, V2);
    for (let i = 0; i < 6; i++) {
      alive.push(null, `h${i}`, "phoenix", "heartbeat", {});
      await alive.expectReply(null, `h${i}`, "phoenix", "ok");
      await sleep(150);
    }
    assert.ok(alive.isOpen(), "heartbeating client was closed");
  });
});

test("12.112 an idle client in a topic that keeps receiving broadcasts is still closed", T, async () => {
  await withConformance("[limits]\nidle_timeout_ms = 500", async (s) => {
    const idle = await connect(s, V2);
    await idle.join("room:112");
    const started = Date.now();
    const talker = await connect(s, V2);
    await talker.join("room:112");
    const timer = setInterval(() => talker.push("1", null, "room:112", "broadcast", { tick: 1 }), 50);
    try {
      const code = await idle.closed(3000);
      assert.notEqual(code, 1000);
      assert.ok(Date.now() - started < 1500, "closed only after " + (Date.now() - started) + " ms");
      assert.ok(idle.frames.some((f) => Array.isArray(f) && f[3] === "broadcasted"), "idle client received broadcasts");
    } finally {
      clearInterval(timer);
    }
  });
});

for (const codec of [V2, V1]) {
  test(`11.16 a text frame that is not valid JSON → 1011, other sockets unaffected (${codec.name})`, T, async () => {
    const bystander = await connect(server, codec);
    await bystander.join("room:16");
    const c = await connect(server, codec);
    await c.join("room:16");
    c.send("{not json");
    assert.equal(await c.closed(), 1011);
    bystander.push("1", "2", "room:16", "reply_ok", {});
    await bystander.expectReply("1", "2", "room:16", "ok");
  });
}

test("11.17 an incoming message larger than 10 000 000 bytes → 1009", { timeout: 20_000 }, async () => {
  // Exactly at the limit is accepted…
  const ok = await connect(server, V2);
  await ok.join("room:17");
  const head = JSON.stringify(["1", "2", "room:17", "reply_ok", { pad: "" }]);
  const exact = head.replace('"pad":""', `"pad":"${"a".repeat(10_000_000 - head.length)}"`);
  assert.equal(Buffer.byteLength(exact), 10_000_000);
  ok.send(exact);
  await ok.expectReply("1", "2", "room:17", "ok", {}, "a 10 000 000-byte message is accepted");
  // …one byte more closes the socket with 1009.
  const c = await connect(server, V2);
  c.send("x".repeat(10_000_001));
  assert.equal(await c.closed(5000), 1009);
});

test("11.18 graceful shutdown with channels joined → each socket closed with 1012", T, async () => {
  const s = await startConformance();
  try {
    const a = await connect(s, V2);
    await a.join("room:18");
    const b = await connect(s, V1);
    await b.join("room:18b");
    s.proc.kill("SIGTERM");
    assert.equal(await a.closed(), 1012);
    assert.equal(await b.closed(), 1012);
  } finally {
    await closeAll();
    await s.stop();
  }
});
