// Checklist §11 items 32-43 (channel messages), over V2 and V1 where the spec gives V1 shapes.
import { test, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import {
  T, V1, V2, SERIALIZERS, startConformance, closeAll, connect, phxSocket, receive, nextEvent, observer,
  binPush, binReply, binServerPush,
} from "./harness.mjs";

let server;
before(async () => { server = await startConformance(); });
after(async () => { await closeAll(); await server.stop(); });
afterEach(closeAll);

const unmatched = { reason: "unmatched topic" };

for (const codec of SERIALIZERS) {
  const v = codec.name;

  test(`11.32 handle_in replying {ok, payload} → ["1","2","room:1","phx_reply",{"status":"ok","response":payload}] (${v})`, T, async () => {
    const c = await connect(server, codec);
    await c.join("room:1");
    c.push("1", "2", "room:1", "echo", { a: 1 });
    await c.expectReply("1", "2", "room:1", "ok", { echo: { a: 1 } });
    await c.expectNone(100);
  });

  test(`11.33 handle_in returning {reply, :ok} → response {} (${v})`, T, async () => {
    const c = await connect(server, codec);
    await c.join("room:33");
    c.push("1", "2", "room:33", "reply_ok", { ignored: true });
    await c.expectReply("1", "2", "room:33", "ok", {});
    // §3.3: any status string is carried as is.
    c.push("1", "3", "room:33", "reply_status", {});
    await c.expectReply("1", "3", "room:33", "custom", { x: 1 });
  });

  test(`11.34 handle_in returning noreply → no frame (${v})`, T, async () => {
    const c = await connect(server, codec);
    await c.join("room:34");
    c.push("1", "2", "room:34", "noreply", {});
    await c.expectNone(200);
    // The channel is still there: the next message is answered.
    c.push("1", "3", "room:34", "reply_ok", {});
    await c.expectReply("1", "3", "room:34", "ok");
  });

  test(`11.35 a message with join_ref null to a joined topic reaches handle_in (${v})`, T, async () => {
    const c = await connect(server, codec);
    await c.join("room:35", "4");
    c.push(null, "5", "room:35", "echo", { b: 2 });
    // Replies carry the channel's join_ref (spec §5.3).
    await c.expectReply("4", "5", "room:35", "ok", { echo: { b: 2 } });
  });

  test(`11.36 a message with a stale non-null join_ref → no frame, handle_in not called (${v})`, T, async () => {
    const obs = await observer(server);
    const c = await connect(server, codec);
    await c.join("room:36", "4");
    // Were it delivered, stop_normal would close the channel and echo would reply.
    c.push("3", "5", "room:36", "stop_normal", {});
    c.push("99", "6", "room:36", "echo", {});
    await c.expectNone(200);
    assert.deepEqual(obs.terminations("room:36"), [], "the channel did not stop");
    c.push("4", "7", "room:36", "echo", { ok: 1 });
    await c.expectReply("4", "7", "room:36", "ok", { echo: { ok: 1 } });
  });

  test(`11.37 a message to a topic not joined → [null,R,topic,"phx_reply",{error, unmatched topic}] (${v})`, T, async () => {
    const c = await connect(server, codec);
    c.push("1", "2", "room:37", "echo", {});
    await c.expectReply(null, "2", "room:37", "error", unmatched);
    c.push(null, "3", "room:37", "echo", {});
    await c.expectReply(null, "3", "room:37", "error", unmatched);
  });

  test(`11.38 async reply(socket_ref, …) called twice → two phx_reply frames with the same ref (${v})`, T, async () => {
    const c = await connect(server, codec);
    await c.join("room:38");
    c.push("1", "2", "room:38", "async_reply_twice", {});
    await c.expectReply("1", "2", "room:38", "ok", { n: 1 });
    await c.expectReply("1", "2", "room:38", "ok", { n: 2 });
    await c.expectNone(100);
  });

  test(`11.39 push(socket,"ev",%{x:1}) → ["1",null,"room:1","ev",{"x":1}] (${v})`, T, async () => {
    const c = await connect(server, codec);
    await c.join("room:39", "7");
    c.push("7", "8", "room:39", "push", { x: 1 });
    await c.expect("7", null, "room:39", "pushed", { x: 1 });
    await c.expectReply("7", "8", "room:39", "ok");
  });
}

test("11.40 push with a non-object payload is rejected by the server API (V2)", T, async () => {
  const c = await connect(server, V2);
  await c.join("room:40");
  c.send(["1", "2", "room:40", "push_non_object", {}]);
  assert.deepEqual(await c.next(), ["1", "2", "room:40", "phx_reply", { status: "error", response: { reason: "payload not object" } }]);
  await c.expectNone(100);
});

test("11.40 V1 has no payload restriction: a non-object push is sent", T, async () => {
  const c = await connect(server, V1);
  await c.join("room:40");
  c.push("1", "2", "room:40", "push_non_object", {});
  await c.expect("1", null, "room:40", "x", 1);
  await c.expectReply("1", "2", "room:40", "ok");
});

test("11.41 binary client push reaches handle_in as bytes; binary reply → kind-1 frame", T, async () => {
  const c = await connect(server, V2);
  await c.join("room:41", "8");
  c.send(binPush("8", "10", "room:41", "describe", [1, 2, 3]));
  await c.expectReply("8", "10", "room:41", "ok", { binary: true, bytes: [1, 2, 3] });
  c.send(binPush("8", "11", "room:41", "echo", [1, 2, 3]));
  // 01 | len(J) | len(R) | len(topic) | len("ok") | J | R | topic | "ok" | bytes
  assert.deepEqual(await c.next(), binReply("8", "11", "room:41", "ok", [1, 2, 3]));
  // The captured client frame of spec §3.4 (join_ref "8", ref "10", topic "room:1", event "bin").
  await c.join("room:1", "8x");
  c.send(Uint8Array.from([0x00, 0x01, 0x02, 0x06, 0x03, 0x38, 0x31, 0x30, 0x72, 0x6f, 0x6f, 0x6d, 0x3a, 0x31, 0x62, 0x69, 0x6e, 0x01, 0x02, 0x03]));
  await c.expectNone(150); // stale join_ref "8" for room:1 (joined as "8x"): dropped
});

test("11.41 phoenix.js: an ArrayBuffer push arrives as bytes and the binary reply as an ArrayBuffer", T, async () => {
  const socket = phxSocket(server);
  const ch = socket.channel("room:41js", {});
  await receive(ch.join());
  assert.deepEqual(await receive(ch.push("describe", new Uint8Array([7, 8, 9]).buffer)), { binary: true, bytes: [7, 8, 9] });
  const resp = await receive(ch.push("echo", new Uint8Array([4, 5]).buffer));
  assert.ok(resp instanceof ArrayBuffer);
  assert.deepEqual([...new Uint8Array(resp)], [4, 5]);
});

test("11.42 binary push → kind-0 server frame with a 4-byte header and no ref", T, async () => {
  const c = await connect(server, V2);
  await c.join("room:42", "12");
  c.send(["12", "13", "room:42", "push_binary", {}]);
  // 00 | len("12") | len("room:42") | len("bin") | "12" | "room:42" | "bin" | 09 08 07
  const f = await c.next();
  assert.deepEqual(f, binServerPush("12", "room:42", "bin", [9, 8, 7]));
  assert.deepEqual([...f.data.slice(0, 4)], [0, 2, 7, 3]);
  await c.expectReply("12", "13", "room:42", "ok");
});

test("11.42 phoenix.js: a binary push arrives as an ArrayBuffer", T, async () => {
  const socket = phxSocket(server);
  const ch = socket.channel("room:42js", {});
  await receive(ch.join());
  const got = nextEvent(ch, "bin");
  await receive(ch.push("push_binary", {}));
  const payload = await got;
  assert.ok(payload instanceof ArrayBuffer);
  assert.deepEqual([...new Uint8Array(payload)], [9, 8, 7]);
});

for (const [name, frame] of [
  ["kind 1", Uint8Array.from([1, 1, 1, 6, 2, 0x31, 0x32, ...Buffer.from("room:1ok"), 1])],
  ["kind 2", Uint8Array.from([2, 6, 2, ...Buffer.from("room:1ev"), 1])],
  ["a truncated kind 0", Uint8Array.from([0, 1, 1, 6])],
  ["a kind 0 whose header overruns the frame", Uint8Array.from([0, 9, 9, 9, 9, 0x31])],
]) {
  test(`11.43 a client binary frame of ${name} is a protocol error (socket closed 1011)`, T, async () => {
    const bystander = await connect(server, V2);
    await bystander.join("room:43");
    const c = await connect(server, V2);
    await c.join("room:43");
    c.send(frame);
    assert.equal(await c.closed(), 1011);
    bystander.send(["1", "2", "room:43", "reply_ok", {}]);
    await bystander.expectReply("1", "2", "room:43", "ok");
  });
}

test("11.43 any binary frame on a V1 socket → 1011", T, async () => {
  const c = await connect(server, V1);
  await c.join("room:43v1");
  c.send(binPush("1", "2", "room:43v1", "echo", [1]));
  assert.equal(await c.closed(), 1011);
});

test("11.32-33 phoenix.js: push replies, custom status, buffered pushes before the join reply", T, async () => {
  const socket = phxSocket(server);
  const ch = socket.channel("room:32js", {});
  const join = ch.join();
  const early = ch.push("echo", { early: true }); // buffered until joined (spec §4.11)
  await receive(join);
  assert.deepEqual(await receive(early), { echo: { early: true } });
  assert.deepEqual(await receive(ch.push("echo", { a: 1 })), { echo: { a: 1 } });
  assert.deepEqual(await receive(ch.push("reply_ok", {})), {});
  assert.deepEqual(await receive(ch.push("reply_status", {}), "custom"), { x: 1 });
  assert.deepEqual(await receive(ch.push("reply_status", {}), "custom"), { x: 1 });
  const pushed = nextEvent(ch, "pushed");
  await receive(ch.push("push", { x: 1 }));
  assert.deepEqual(await pushed, { x: 1 });
});
