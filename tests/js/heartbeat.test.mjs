// Checklist §11 items 19-22 (heartbeat).
import { test, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { T, V1, V2, startConformance, closeAll, connect, phxSocket, receive } from "./harness.mjs";

let server;
before(async () => { server = await startConformance(); });
after(async () => { await closeAll(); await server.stop(); });
afterEach(closeAll);

test('11.19 [null,"1","phoenix","heartbeat",{}] → [null,"1","phoenix","phx_reply",{"status":"ok","response":{}}]', T, async () => {
  const c = await connect(server, V2);
  c.send([null, "1", "phoenix", "heartbeat", {}]);
  assert.deepEqual(await c.next(), [null, "1", "phoenix", "phx_reply", { status: "ok", response: {} }]);
  await c.expectNone(100);
});

test("11.20 heartbeat with a non-null join_ref is answered with join_ref null", T, async () => {
  const c = await connect(server, V2);
  c.send(["7", "2", "phoenix", "heartbeat", {}]);
  assert.deepEqual(await c.next(), [null, "2", "phoenix", "phx_reply", { status: "ok", response: {} }]);
  // Also while a channel with that join_ref is joined.
  await c.join("room:20", "7");
  c.send(["7", "3", "phoenix", "heartbeat", {}]);
  assert.deepEqual(await c.next(), [null, "3", "phoenix", "phx_reply", { status: "ok", response: {} }]);
});

for (const codec of [V2, V1]) {
  test(`11.21 heartbeat is answered when no channel is joined, and while a join is slow (${codec.name})`, T, async () => {
    const c = await connect(server, codec);
    c.push(null, "1", "phoenix", "heartbeat", {});
    await c.expectReply(null, "1", "phoenix", "ok");
    // A join that takes 500 ms must not delay the heartbeat reply (spec §4.3).
    c.push("2", "2", "room:21", "phx_join", { slow_ms: 500 });
    c.push(null, "3", "phoenix", "heartbeat", {});
    const started = Date.now();
    await c.expectReply(null, "3", "phoenix", "ok");
    assert.ok(Date.now() - started < 300, "heartbeat waited for the slow join");
    await c.expectReply("2", "2", "room:21", "ok");
  });
}

test('11.22 V1: {"topic":"phoenix","event":"heartbeat","payload":{},"ref":"1"} → V1 phx_reply', T, async () => {
  for (const query of ["vsn=1.0.0", ""]) {
    const c = await connect(server, V1, { query });
    c.send({ topic: "phoenix", event: "heartbeat", payload: {}, ref: "1" });
    const f = await c.next();
    assert.deepEqual(f, { topic: "phoenix", event: "phx_reply", payload: { status: "ok", response: {} }, ref: "1" });
    assert.ok(!("join_ref" in f), "V1 output never contains join_ref");
  }
});

test("4.3 phoenix.js socket.ping() gets the heartbeat reply", T, async () => {
  const socket = phxSocket(server);
  await new Promise((r) => socket.onOpen(r));
  const rtt = await new Promise((r) => socket.ping(r));
  assert.equal(typeof rtt, "number");
});

test('10.16 a channel called "phoenix" never sees heartbeats; other events on "phoenix" route normally', T, async () => {
  const c = await connect(server, V2);
  c.send(["1", "1", "phoenix", "phx_join", {}]);
  // No route for "phoenix" in the conformance server: the join is unmatched…
  await c.expectReply(null, "1", "phoenix", "error", { reason: "unmatched topic" });
  // …and so is any other event on it, while heartbeats are answered.
  c.send([null, "2", "phoenix", "other", {}]);
  await c.expectReply(null, "2", "phoenix", "error", { reason: "unmatched topic" });
  c.send([null, "3", "phoenix", "heartbeat", {}]);
  await c.expectReply(null, "3", "phoenix", "ok");
});
