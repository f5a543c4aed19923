// Checklist §11 items 44-52 (broadcast / fastlane), mixing V2 and V1 subscribers.
import { test, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import {
  T, V1, V2, startConformance, closeAll, connect, phxSocket, receive, nextEvent, binBroadcast, metric,
} from "./harness.mjs";

let server;
before(async () => { server = await startConformance(); });
after(async () => { await closeAll(); await server.stop(); });
afterEach(closeAll);

/** Three sockets joined to `topic`: a (V2, join_ref "1"), b (V2, "2"), c (V1, "3"). */
async function trio(topic) {
  const a = await connect(server, V2), b = await connect(server, V2), c = await connect(server, V1);
  await a.join(topic, "1");
  await b.join(topic, "2");
  await c.join(topic, "3");
  return [a, b, c];
}

test('11.44 broadcast → every joined socket, the sender included, gets [null,null,"room:1","ev",{"a":1}]', T, async () => {
  const [a, b, c] = await trio("room:44");
  a.push("1", "9", "room:44", "broadcast", { a: 1 });
  await a.expect(null, null, "room:44", "broadcasted", { a: 1 });
  await a.expectReply("1", "9", "room:44", "ok");
  await b.expect(null, null, "room:44", "broadcasted", { a: 1 });
  await c.expect(null, null, "room:44", "broadcasted", { a: 1 }); // V1: {"topic","event","payload","ref":null}
  for (const s of [a, b, c]) await s.expectNone(50);
});

test("11.45 broadcast_from → every subscriber except the sending channel's socket", T, async () => {
  const [a, b, c] = await trio("room:45");
  a.push("1", "9", "room:45", "broadcast_from", { f: 1 });
  await a.expectReply("1", "9", "room:45", "ok");
  await b.expect(null, null, "room:45", "broadcasted", { f: 1 });
  await c.expect(null, null, "room:45", "broadcasted", { f: 1 });
  await a.expectNone(200);
});

test("11.46 Endpoint.broadcast(\"room:1\",\"ev\",p) from outside a channel reaches all subscribers", T, async () => {
  const [a, b, c] = await trio("room:46");
  server.broadcast("room:46", "ev", { outside: true });
  for (const s of [a, b, c]) await s.expect(null, null, "room:46", "ev", { outside: true });
  // The same from a channel of another topic (from = none: every subscriber).
  const outside = await connect(server, V2);
  await outside.join("lobby");
  outside.push("1", "2", "lobby", "endpoint_broadcast", { topic: "room:46", event: "ev", payload: { p: 1 } });
  await outside.expectReply("1", "2", "lobby", "ok");
  for (const s of [a, b, c]) await s.expect(null, null, "room:46", "ev", { p: 1 });
  await outside.expectNone(100);
});

test("11.47 a binary broadcast → kind-2 frame 02|len(topic)|len(event)|topic|event|bytes", T, async () => {
  const [a, b, c] = await trio("room:47");
  a.push("1", "9", "room:47", "broadcast_binary", {});
  const f = await a.next();
  assert.deepEqual(f, binBroadcast("room:47", "bin_broadcast", [4, 5, 6]));
  assert.deepEqual([...f.data.slice(0, 3)], [2, 7, 13]);
  await a.expectReply("1", "9", "room:47", "ok");
  assert.deepEqual(await b.next(), binBroadcast("room:47", "bin_broadcast", [4, 5, 6]));
  // V1 cannot carry binary: the V1 subscriber gets nothing and stays connected.
  await c.expectNone(150);
  c.push(null, "h", "phoenix", "heartbeat", {});
  await c.expectReply(null, "h", "phoenix", "ok");
});

test("11.47 phoenix.js: a binary broadcast arrives as an ArrayBuffer", T, async () => {
  const socket = phxSocket(server);
  const ch = socket.channel("room:47js", {});
  await receive(ch.join());
  const got = nextEvent(ch, "bin_broadcast");
  await receive(ch.push("broadcast_binary", {}));
  assert.deepEqual([...new Uint8Array(await got)], [4, 5, 6]);
});

test("11.48 intercepted event: handle_out per subscriber, no fastlane frame, its push carries J", T, async () => {
  const [a, b, c] = await trio("intercept:48");
  a.push("1", "9", "intercept:48", "secret", { s: 1 });
  const pushed = (s, jr) => s.waitFor((f) => (Array.isArray(f) ? f[3] : f.event) === "secret");
  assert.deepEqual(await pushed(a), ["1", null, "intercept:48", "secret", { intercepted: { s: 1 } }]);
  assert.deepEqual(await pushed(b), ["2", null, "intercept:48", "secret", { intercepted: { s: 1 } }]);
  assert.deepEqual(await pushed(c), { topic: "intercept:48", event: "secret", payload: { intercepted: { s: 1 } }, ref: null });
  await a.waitFor((f) => f[3] === "phx_reply" && f[1] === "9");
  await new Promise((r) => setTimeout(r, 100));
  for (const s of [a, b, c]) {
    const secrets = s.frames.filter((f) => (Array.isArray(f) ? f[3] : f.event) === "secret");
    assert.equal(secrets.length, 1, "exactly one (intercepted) frame, no fastlane copy");
  }
});

test("11.49 intercepted event whose handle_out does nothing → that client receives nothing", T, async () => {
  const [a, b, c] = await trio("intercept:49");
  a.push("1", "9", "intercept:49", "filtered", { s: 1 });
  await a.expectReply("1", "9", "intercept:49", "ok");
  for (const s of [a, b, c]) await s.expectNone(150);
  // Events not intercepted still take the fastlane.
  a.push("1", "10", "intercept:49", "open", { o: 1 });
  for (const s of [a, b, c]) await s.expect(null, null, "intercept:49", "open", { o: 1 });
});

test("11.50 a broadcast is serialized once per serializer, not once per subscriber", T, async () => {
  const subs = [];
  for (let i = 0; i < 4; i++) subs.push(await connect(server, V2));
  for (let i = 0; i < 3; i++) subs.push(await connect(server, V1));
  for (const [i, s] of subs.entries()) await s.join("room:50", `j${i}`);
  const name = "phx_broker_broadcast_encodes_total";
  const before = await metric(server, name);
  subs[0].push("j0", "b", "room:50", "broadcast", { n: 1 });
  for (const s of subs) await s.waitFor((f) => (Array.isArray(f) ? f[3] : f.event) === "broadcasted");
  assert.equal((await metric(server, name)) - before, 2, "7 subscribers, 2 serializers → 2 encodings");
  // V2 subscribers only → 1 encoding.
  const v2only = [];
  for (let i = 0; i < 5; i++) {
    const s = await connect(server, V2);
    await s.join("room:50b", `k${i}`);
    v2only.push(s);
  }
  const before2 = await metric(server, name);
  v2only[0].push("k0", "b", "room:50b", "broadcast", { n: 2 });
  for (const s of v2only) await s.waitFor((f) => f[3] === "broadcasted");
  assert.equal((await metric(server, name)) - before2, 1);
});

// 11.51 local_broadcast does not reach other nodes: two nodes over Redis in broker/tests/cluster.rs
// (BrokerHandle::local_broadcast vs broadcast); cross-node broadcasts with phoenix.js in
// cluster.test.mjs.

test("11.52 broadcast! then {:reply, :ok} → the sender's socket gets the broadcast before the reply", T, async () => {
  for (const codec of [V2, V1]) {
    const a = await connect(server, codec);
    await a.join("room:52");
    for (let i = 0; i < 20; i++) {
      a.push("1", `r${i}`, "room:52", "broadcast", { i });
      await a.expect(null, null, "room:52", "broadcasted", { i }, `iteration ${i}`);
      await a.expectReply("1", `r${i}`, "room:52", "ok");
    }
  }
});

test("11.44 phoenix.js: two clients receive a broadcast", T, async () => {
  const s1 = phxSocket(server), s2 = phxSocket(server);
  const c1 = s1.channel("room:44js", {}), c2 = s2.channel("room:44js", {});
  await receive(c1.join());
  await receive(c2.join());
  const got1 = nextEvent(c1, "broadcasted"), got2 = nextEvent(c2, "broadcasted");
  await receive(c1.push("broadcast", { hello: "world" }));
  assert.deepEqual(await got1, { hello: "world" });
  assert.deepEqual(await got2, { hello: "world" });
});
