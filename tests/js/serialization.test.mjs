// Checklist §11 items 65-68 (serialization) and §12.8 items 105-108 (key order, lenient
// decoding, null topics, binary joins).
import { test, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import {
  T, V1, V2, startConformance, closeAll, connect, observer, binPush, binReply, sleep,
} from "./harness.mjs";

let server;
before(async () => { server = await startConformance(); });
after(async () => { await closeAll(); await server.stop(); });
afterEach(closeAll);

const unmatched = { reason: "unmatched topic" };

test("11.65 the V2 decoder ignores array elements beyond the fifth", T, async () => {
  const c = await connect(server, V2);
  c.send(["1", "1", "room:65", "phx_join", {}, "extra", 7]);
  await c.expectReply("1", "1", "room:65", "ok", {});
  c.send(["1", "2", "room:65", "echo", { a: 1 }, null]);
  await c.expectReply("1", "2", "room:65", "ok", { echo: { a: 1 } });
  c.send([null, "3", "phoenix", "heartbeat", {}, {}]);
  await c.expectReply(null, "3", "phoenix", "ok");
});

for (const [name, text] of [
  ["four elements", '["1","1","room:1","phx_join"]'],
  ["an empty array", "[]"],
  ["an object", '{"topic":"room:1","event":"phx_join","payload":{},"ref":"1"}'],
  ["a bare number", "42"],
  ["an empty text frame", ""],
  ["a non-string event", '["1","1","room:1",7,{}]'],
]) {
  test(`11.66 the V2 decoder rejects ${name}: socket closed 1011`, T, async () => {
    const c = await connect(server, V2);
    await c.join("room:66");
    c.send(text);
    assert.equal(await c.closed(), 1011);
    assert.deepEqual(c.frames.slice(c.cursor), [], "no Phoenix frame before the close");
  });
}

for (const missing of ["topic", "event", "payload", "ref"]) {
  test(`11.67 the V1 decoder requires "${missing}" (missing → socket closed 1011)`, T, async () => {
    const c = await connect(server, V1);
    const msg = { topic: "room:67", event: "phx_join", payload: {}, ref: "1" };
    delete msg[missing];
    c.send(msg);
    assert.equal(await c.closed(), 1011);
  });
}

test("11.67 V1: an array on a V1 socket → 1011", T, async () => {
  const c = await connect(server, V1);
  c.send(["1", "1", "room:67", "phx_join", {}]);
  assert.equal(await c.closed(), 1011);
});

test("11.67 V1: join_ref is optional, ref may be null; V1 output never contains join_ref", T, async () => {
  const c = await connect(server, V1);
  c.send({ topic: "room:67", event: "phx_join", payload: {}, ref: "1" }); // no join_ref key
  await c.expectReply(null, "1", "room:67", "ok", {});
  c.send({ topic: "room:67", event: "echo", payload: { z: 1 }, ref: null, join_ref: null });
  await c.expectReply(null, null, "room:67", "ok", { echo: { z: 1 } });
  await c.join("room:67b", "5");
  c.push("5", "6", "room:67b", "push", { p: 1 });
  c.push("5", "7", "room:67b", "broadcast", { b: 1 });
  c.push("5", "8", "room:67b", "stop_normal", {});
  await c.waitFor((f) => f.event === "phx_close");
  c.push("9", "9", "room:67c", "phx_join", {});
  await c.waitFor((f) => f.topic === "room:67c" && f.ref === "9");
  c.push("9", "10", "room:67c", "crash", {});
  await c.waitFor((f) => f.event === "phx_error");
  assert.deepEqual(c.frames.map((f) => f.event).sort(),
    ["broadcasted", "phx_close", "phx_error", "phx_reply", "phx_reply", "phx_reply", "phx_reply", "phx_reply", "phx_reply", "pushed"]);
  for (const f of c.frames) {
    assert.deepEqual(Object.keys(f).sort(), ["event", "payload", "ref", "topic"], JSON.stringify(f));
    assert.ok(!f.raw.includes('"join_ref"'), f.raw);
  }
});

test("11.68 binary frames with a header field > 255 bytes are never produced", T, async () => {
  const long = "room:" + "x".repeat(300);
  const c = await connect(server, V2);
  // A binary push on a topic longer than 255 bytes: refused by the server API, not sent.
  await c.join(long, "1");
  c.send(["1", "2", long, "push_binary", {}]);
  const r = await c.next();
  assert.ok(!r.binary, "a binary frame was produced");
  assert.deepEqual([r[0], r[1], r[2], r[3], r[4].status], ["1", "2", long, "phx_reply", "error"]);
  // A binary broadcast on that topic: no kind-2 frame reaches the subscriber.
  c.send(["1", "3", long, "broadcast_binary", {}]);
  await c.expectReply("1", "3", long, "ok");
  await c.expectNone(150);
  // A binary join reply whose ref is longer than 255 bytes: no kind-1 frame (an error reply or a
  // socket crash are both acceptable).
  const longRef = "r".repeat(300);
  c.send([longRef, longRef, "room:68", "phx_join", { binary_reply: true }]);
  await sleep(150);
  for (const f of c.frames) assert.ok(!f.binary, "a binary frame was produced");
  if (c.isOpen()) {
    const reply = await c.next();
    assert.deepEqual([reply[1], reply[3], reply[4].status], [longRef, "phx_reply", "error"]);
  } else {
    assert.equal(c.closeCode, 1011);
  }
});

test("12.105 reply envelopes have sorted keys: {\"response\":…,\"status\":…}", T, async () => {
  const c = await connect(server, V2);
  c.send(["1", "1", "room:105", "phx_join", { reply: { b: 1, a: 2 } }]);
  const join = await c.next();
  assert.match(join.raw, /"phx_reply",\{"response":\{.*\},"status":"ok"\}\]$/);
  c.send([null, "2", "phoenix", "heartbeat", {}]);
  assert.equal((await c.next()).raw, '[null,"2","phoenix","phx_reply",{"response":{},"status":"ok"}]');
  c.send(["1", "3", "x:105", "phx_join", {}]);
  assert.equal((await c.next()).raw, '[null,"3","x:105","phx_reply",{"response":{"reason":"unmatched topic"},"status":"error"}]');
  c.send(["1", "4", "room:105", "reply_status", {}]);
  assert.equal((await c.next()).raw, '["1","4","room:105","phx_reply",{"response":{"x":1},"status":"custom"}]');
  // V1 objects come out as event, payload, ref, topic (spec §12.1).
  const v1 = await connect(server, V1);
  v1.send({ topic: "phoenix", event: "heartbeat", payload: {}, ref: "1" });
  assert.equal((await v1.next()).raw, '{"event":"phx_reply","payload":{"response":{},"status":"ok"},"ref":"1","topic":"phoenix"}');
});

test("12.106 extra elements join normally; numeric refs come back as numbers", T, async () => {
  const c = await connect(server, V2);
  c.send(["1", "1", "room:106", "phx_join", {}, "extra"]);
  await c.expectReply("1", "1", "room:106", "ok", {});
  c.send('[1,2,"room:106b","phx_join",{}]');
  const r = await c.next();
  assert.deepEqual(r, [1, 2, "room:106b", "phx_reply", { status: "ok", response: {} }]);
  assert.equal(r.raw.slice(0, 5), "[1,2,");
  c.send('[1,3,"room:106b","echo",{}]');
  assert.deepEqual(await c.next(), [1, 3, "room:106b", "phx_reply", { status: "ok", response: { echo: {} } }]);
  // The stale check compares exactly: "1" is not 1.
  c.send('["1",4,"room:106b","echo",{}]');
  await c.expectNone(150);
  c.send('[1,5,"room:106b","stop_normal",{}]');
  assert.deepEqual(await c.next(), [1, 1, "room:106b", "phx_close", {}]);
});

test("12.107 a frame with topic null → [null,R,null,\"phx_reply\",{error, unmatched topic}], socket stays open", T, async () => {
  const c = await connect(server, V2);
  c.send('[null,"1",null,"phx_join",{}]');
  assert.deepEqual(await c.next(), [null, "1", null, "phx_reply", { response: unmatched, status: "error" }]);
  c.send('["1","2",5,"ev",{}]');
  assert.deepEqual(await c.next(), [null, "2", 5, "phx_reply", { response: unmatched, status: "error" }]);
  c.send([null, "3", "phoenix", "heartbeat", {}]);
  await c.expectReply(null, "3", "phoenix", "ok");
  assert.ok(c.isOpen());
});

test("12.108 a kind-0 binary phx_join joins; a binary push to an unjoined topic gets a text error reply", T, async () => {
  const obs = await observer(server);
  const c = await connect(server, V2);
  c.send(binPush("3", "3", "room:108", "phx_join", [7, 7]));
  // TestChannel answers a binary join with its params (a kind-1 reply).
  assert.deepEqual(await c.next(), binReply("3", "3", "room:108", "ok", [7, 7]));
  c.send(["3", "4", "room:108", "echo", { j: 1 }]);
  await c.expectReply("3", "4", "room:108", "ok", { echo: { j: 1 } });
  c.send(binPush("3", "5", "room:108", "describe", [1]));
  await c.expectReply("3", "5", "room:108", "ok", { binary: true, bytes: [1] });
  c.send(binPush("", "6", "room:108x", "echo", [1]));
  const f = await c.next();
  assert.ok(!f.binary, "the error reply is a text frame");
  assert.deepEqual(f, [null, "6", "room:108x", "phx_reply", { status: "error", response: unmatched }]);
  c.send(["3", "7", "room:108", "stop_normal", {}]);
  await c.expect("3", "3", "room:108", "phx_close", {});
  assert.equal(await obs.terminated("room:108"), "normal");
});
