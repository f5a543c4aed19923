// Checklist §11 items 23-31 (join), over V2 and, where the spec gives V1 shapes, V1.
import { test, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import {
  T, V1, V2, SERIALIZERS, startConformance, closeAll, connect, phxSocket, receive, binReply, until,
} from "./harness.mjs";

let server;
before(async () => { server = await startConformance(); });
after(async () => { await closeAll(); await server.stop(); });
afterEach(closeAll);

const unmatched = { reason: "unmatched topic" };

for (const codec of SERIALIZERS) {
  const v = codec.name;

  test(`11.23 join ok → ["1","1","room:1","phx_reply",{"status":"ok","response":{}}] (${v})`, T, async () => {
    const c = await connect(server, codec);
    c.push("1", "1", "room:1", "phx_join", {});
    await c.expectReply("1", "1", "room:1", "ok", {});
    await c.expectNone(100);
  });

  test(`11.24 join returning {ok, %{a: 1}} → response {"a":1} (${v})`, T, async () => {
    const c = await connect(server, codec);
    c.push("3", "3", "room:24", "phx_join", { reply: { a: 1 } });
    await c.expectReply("3", "3", "room:24", "ok", { a: 1 });
  });

  test(`11.25 join returning {error, %{reason: "unauthorized"}} → error reply; no channel afterwards (${v})`, T, async () => {
    const c = await connect(server, codec);
    c.push("1", "1", "room:25", "phx_join", { reject: "unauthorized" });
    await c.expectReply("1", "1", "room:25", "error", { reason: "unauthorized" });
    c.push("1", "2", "room:25", "reply_ok", {});
    await c.expectReply(null, "2", "room:25", "error", unmatched, "a message after a refused join is unmatched");
    // A later join of the same topic is a fresh join (no duplicate-join phx_close).
    c.push("3", "3", "room:25", "phx_join", {});
    await c.expectReply("3", "3", "room:25", "ok", {});
    await c.expectNone(100);
  });

  test(`11.26 join that raises → error reply {"reason":"join crashed"}; no channel (${v})`, T, async () => {
    const c = await connect(server, codec);
    c.push("1", "1", "room:26", "phx_join", { crash: true });
    await c.expectReply("1", "1", "room:26", "error", { reason: "join crashed" });
    c.push("1", "2", "room:26", "reply_ok", {});
    await c.expectReply(null, "2", "room:26", "error", unmatched);
    // The socket survives.
    c.push(null, "3", "phoenix", "heartbeat", {});
    await c.expectReply(null, "3", "phoenix", "ok");
  });

  test(`11.27 join to a topic with no route → [null,"1","x:1","phx_reply",{error, unmatched topic}] (${v})`, T, async () => {
    const c = await connect(server, codec);
    c.push("1", "1", "x:1", "phx_join", {});
    await c.expectReply(null, "1", "x:1", "error", unmatched);
  });

  test(`11.28 "room:*" matches "room:" and "room:abc", not "rooms"; "lobby" only "lobby" (${v})`, T, async () => {
    const c = await connect(server, codec);
    const cases = [["room:", true], ["room:abc", true], ["rooms", false], ["room", false], ["lobby", true], ["lobby2", false], ["xlobby", false], ["lobby:1", false]];
    let n = 0;
    for (const [topic, ok] of cases) {
      const ref = String(++n);
      c.push(ref, ref, topic, "phx_join", {});
      if (ok) await c.expectReply(ref, ref, topic, "ok", {}, topic);
      else await c.expectReply(null, ref, topic, "error", unmatched, topic);
    }
  });

  test(`11.29 the 101st concurrent join → {"reason":"too many channels joined"} with its join_ref and ref (${v})`, T, async () => {
    const c = await connect(server, codec);
    for (let i = 0; i < 100; i++) c.push(`j${i}`, `j${i}`, `room:29:${i}`, "phx_join", {});
    await until(() => c.frames.length >= 100, 5000, "100 join replies");
    const expected = Array.from({ length: 100 }, (_, i) => c.reply(`j${i}`, `j${i}`, `room:29:${i}`, "ok", {}));
    const refOf = (f) => (Array.isArray(f) ? f[1] : f.ref);
    const byRef = (a, b) => (refOf(a) < refOf(b) ? -1 : refOf(a) > refOf(b) ? 1 : 0);
    assert.deepEqual([...c.frames].sort(byRef), expected.sort(byRef));
    c.skip();
    c.push("x", "y", "room:29:extra", "phx_join", {});
    await c.expectReply("x", "y", "room:29:extra", "error", { reason: "too many channels joined" });
    // The existing channels still work.
    c.push("j5", "m", "room:29:5", "reply_ok", {});
    await c.expectReply("j5", "m", "room:29:5", "ok");
  });

  test(`11.30 a broadcast published during the join is delivered only after the join reply (${v})`, T, async () => {
    const talker = await connect(server, V2);
    await talker.join("room:30");
    const c = await connect(server, codec);
    const timer = setInterval(() => talker.push("1", null, "room:30", "broadcast", { n: 1 }), 10);
    try {
      c.push("5", "5", "room:30", "phx_join", { slow_ms: 300 });
      const first = await c.next(3000);
      assert.deepEqual(first, c.reply("5", "5", "room:30", "ok", {}), "the join reply is the first frame");
      const second = await c.next(3000);
      assert.deepEqual(second, c.frame(null, null, "room:30", "broadcasted", { n: 1 }), "broadcasts follow");
    } finally {
      clearInterval(timer);
    }
  });
}

test('11.31 a join with a binary reply payload → kind-1 frame with status "ok"', T, async () => {
  const c = await connect(server, V2);
  c.push("1", "1", "room:31", "phx_join", { binary_reply: true });
  // 01 | len("1") | len("1") | len("room:31") | len("ok") | "1" "1" "room:31" "ok" | 01 02 03
  assert.deepEqual(await c.next(), binReply("1", "1", "room:31", "ok", [1, 2, 3]));
  assert.deepEqual([...(await c.frames[0]).data.slice(0, 5)], [1, 1, 1, 7, 2]);
});

test("11.31 phoenix.js: a binary join reply arrives as an ArrayBuffer", T, async () => {
  const socket = phxSocket(server);
  const resp = await receive(socket.channel("room:31js", { binary_reply: true }).join());
  assert.ok(resp instanceof ArrayBuffer);
  assert.deepEqual([...new Uint8Array(resp)], [1, 2, 3]);
});

test("11.23-25 phoenix.js: join ok, join with a reply, join refused", T, async () => {
  const socket = phxSocket(server);
  assert.deepEqual(await receive(socket.channel("room:p1", {}).join()), {});
  assert.deepEqual(await receive(socket.channel("room:p2", { reply: { a: 1 } }).join()), { a: 1 });
  const refused = socket.channel("room:p3", { reject: "unauthorized" });
  assert.deepEqual(await receive(refused.join(), "error"), { reason: "unauthorized" });
  refused.leave();
  const nope = socket.channel("x:1", {});
  assert.deepEqual(await receive(nope.join(), "error"), { reason: "unmatched topic" });
  nope.leave();
});
