// Checklist §11 items 53-64 (leave, close, errors), over V2 and V1 where the spec gives V1 shapes.
// TestChannel reports every `terminate` call to the `observer` topic.
import { test, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { isDeepStrictEqual } from "node:util";
import {
  T, V1, V2, SERIALIZERS, startConformance, closeAll, connect, observer, phxSocket, receive, until, sleep,
} from "./harness.mjs";

let server;
before(async () => { server = await startConformance(); });
after(async () => { await closeAll(); await server.stop(); });
afterEach(closeAll);

const unmatched = { reason: "unmatched topic" };

for (const codec of SERIALIZERS) {
  const v = codec.name;

  test(`11.53 phx_leave → ok reply, then phx_close with ref = join_ref; terminate({:shutdown,:left}) (${v})`, T, async () => {
    const obs = await observer(server);
    const c = await connect(server, codec);
    await c.join("room:53", "1");
    c.push("1", "3", "room:53", "phx_leave", {});
    await c.expectReply("1", "3", "room:53", "ok", {});
    await c.expect("1", "1", "room:53", "phx_close", {});
    await c.expectNone(100);
    assert.equal(await obs.terminated("room:53"), "shutdown:left");
  });

  test(`11.54 phx_leave with join_ref null on a joined topic → same as 11.53 (${v})`, T, async () => {
    const obs = await observer(server);
    const c = await connect(server, codec);
    await c.join("room:54", "1");
    c.push(null, "3", "room:54", "phx_leave", {});
    await c.expectReply("1", "3", "room:54", "ok", {});
    await c.expect("1", "1", "room:54", "phx_close", {});
    assert.equal(await obs.terminated("room:54"), "shutdown:left");
  });

  test(`11.55 phx_leave with a stale join_ref → no frame; the channel keeps running (${v})`, T, async () => {
    const obs = await observer(server);
    const c = await connect(server, codec);
    await c.join("room:55", "4");
    c.push("2", "5", "room:55", "phx_leave", {});
    await c.expectNone(200);
    assert.deepEqual(obs.terminations("room:55"), []);
    c.push("4", "6", "room:55", "echo", {});
    await c.expectReply("4", "6", "room:55", "ok", { echo: {} });
  });

  test(`11.56 phx_leave on a topic not joined → [<join_ref of the message>,R,topic,"phx_reply",ok {}] (${v})`, T, async () => {
    const c = await connect(server, codec);
    c.push("7", "8", "room:56", "phx_leave", {});
    await c.expectReply("7", "8", "room:56", "ok", {});
    c.push(null, "9", "room:56", "phx_leave", {});
    await c.expectReply(null, "9", "room:56", "ok", {});
    await c.expectNone(100);
  });

  test(`11.57 after leave, a message to the topic → unmatched-topic error reply (${v})`, T, async () => {
    const c = await connect(server, codec);
    await c.join("room:57", "1");
    c.push("1", "2", "room:57", "phx_leave", {});
    await c.expectReply("1", "2", "room:57", "ok");
    await c.expect("1", "1", "room:57", "phx_close", {});
    c.push("1", "3", "room:57", "echo", {});
    await c.expectReply(null, "3", "room:57", "error", unmatched);
  });

  test(`11.58 handle_in returning {stop, :normal} → ["1","1","room:1","phx_close",{}], channel removed (${v})`, T, async () => {
    const obs = await observer(server);
    const c = await connect(server, codec);
    await c.join("room:58", "1");
    c.push("1", "2", "room:58", "stop_normal", {});
    await c.expect("1", "1", "room:58", "phx_close", {});
    await c.expectNone(100);
    c.push("1", "3", "room:58", "echo", {});
    await c.expectReply(null, "3", "room:58", "error", unmatched);
    assert.equal(await obs.terminated("room:58"), "normal");
  });

  test(`11.59 {stop, :shutdown, {:error, %{r: 1}}} → the error reply first, then phx_close (${v})`, T, async () => {
    const c = await connect(server, codec);
    await c.join("room:59", "1");
    c.push("1", "2", "room:59", "stop_shutdown_reply", {});
    await c.expectReply("1", "2", "room:59", "error", { r: 1 });
    await c.expect("1", "1", "room:59", "phx_close", {});
    await c.expectNone(100);
  });

  test(`11.60 handle_in raising → ["1","1","room:1","phx_error",{"reason":"channel_crash"}], channel removed (${v})`, T, async () => {
    const obs = await observer(server);
    const c = await connect(server, codec);
    await c.join("room:60", "1");
    c.push("1", "2", "room:60", "crash", {});
    await c.expect("1", "1", "room:60", "phx_error", { reason: "channel_crash" });
    await c.expectNone(100);
    c.push("1", "3", "room:60", "echo", {});
    await c.expectReply(null, "3", "room:60", "error", unmatched);
    // A stop with a non-shutdown reason is an error too (gotcha 25); terminate is not called on crashes.
    await c.join("room:60b", "5");
    c.push("5", "6", "room:60b", "stop_error", {});
    await c.expect("5", "5", "room:60b", "phx_error", { reason: "channel_crash" });
    await sleep(100);
    assert.deepEqual(obs.terminations("room:60"), [], "terminate is not called after a crash");
  });

  test(`11.61 handle_info returning {stop, {:shutdown, :x}} → phx_close (${v})`, T, async () => {
    const obs = await observer(server);
    const c = await connect(server, codec);
    await c.join("room:61", "1");
    c.push("1", "2", "room:61", "info_stop", {});
    await c.expectReply("1", "2", "room:61", "ok");
    await c.expect("1", "1", "room:61", "phx_close", {});
    assert.equal(await obs.terminated("room:61"), "shutdown:x");
  });

  test(`11.62 a second phx_join (join_ref "5") → old channel terminated, new reply, then phx_close for "1" (${v})`, T, async () => {
    const obs = await observer(server);
    const c = await connect(server, codec);
    await c.join("room:62", "1");
    c.push("5", "5", "room:62", "phx_join", {});
    await c.expectReply("5", "5", "room:62", "ok", {});
    await c.expect("1", "1", "room:62", "phx_close", {});
    await c.expectNone(100);
    assert.equal(await obs.terminated("room:62"), "shutdown:duplicate_join");
    // The new incarnation is the one that answers; the old join_ref is stale.
    c.push("5", "6", "room:62", "echo", {});
    await c.expectReply("5", "6", "room:62", "ok", { echo: {} });
    c.push("1", "7", "room:62", "echo", {});
    await c.expectNone(150);
  });

  test(`11.63 phx_leave(J=1) then phx_join(J=5) back-to-back → one phx_close for "1", ok reply for "5" (${v})`, T, async () => {
    const c = await connect(server, codec);
    await c.join("room:63", "1");
    c.push("1", "3", "room:63", "phx_leave", {});
    c.push("5", "5", "room:63", "phx_join", {});
    const joinReply = c.reply("5", "5", "room:63", "ok", {});
    await c.waitFor((f) => isDeepStrictEqual(f, joinReply));
    await sleep(150);
    const after = c.frames.slice(c.cursor);
    const isClose = (f) => (Array.isArray(f) ? f[3] : f.event) === "phx_close";
    assert.deepEqual(after.filter(isClose), [c.frame("1", "1", "room:63", "phx_close", {})], "exactly one phx_close, for the old join_ref");
    const allowed = [c.reply("1", "3", "room:63", "ok", {}), c.frame("1", "1", "room:63", "phx_close", {}), joinReply];
    for (const f of after) assert.ok(allowed.some((a) => isDeepStrictEqual(f, a)), `unexpected frame ${JSON.stringify(f)}`);
    c.skip();
    c.push("5", "6", "room:63", "echo", {});
    await c.expectReply("5", "6", "room:63", "ok", { echo: {} });
  });

  test(`11.64 socket closed by the client → its channels run terminate({:shutdown,:closed}) (${v})`, T, async () => {
    const obs = await observer(server);
    const c = await connect(server, codec);
    await c.join("room:64a", "1");
    await c.join("room:64b", "2");
    c.close();
    assert.equal(await obs.terminated("room:64a"), "shutdown:closed");
    assert.equal(await obs.terminated("room:64b"), "shutdown:closed");
  });
}

test("12.4 a join with a null join_ref: phx_close carries null refs; its ref as join_ref is stale", T, async () => {
  const c = await connect(server, V2);
  c.send([null, "1", "room:124", "phx_join", {}]);
  const reply = await c.next();
  assert.equal(reply[1], "1");
  assert.equal(reply[3], "phx_reply");
  assert.deepEqual(reply[4], { status: "ok", response: {} });
  c.send(["1", "2", "room:124", "echo", {}]); // join_ref "1" ≠ null: stale, dropped
  await c.expectNone(150);
  c.send([null, "3", "room:124", "stop_normal", {}]);
  assert.deepEqual(await c.next(), [null, null, "room:124", "phx_close", {}]);
});

test("11.58/60 phoenix.js: phx_close closes the channel for good, phx_error makes it rejoin", T, async () => {
  const socket = phxSocket(server);
  const closing = socket.channel("room:58js", {});
  await receive(closing.join());
  const closed = new Promise((r) => closing.onClose(r));
  closing.push("stop_normal", {});
  await closed;
  assert.equal(closing.state, "closed");

  const crashing = socket.channel("room:60js", {});
  await receive(crashing.join());
  const firstJoinRef = crashing.joinRef();
  const errored = new Promise((r) => crashing.onError(r));
  crashing.push("crash", {});
  assert.deepEqual(await errored, { reason: "channel_crash" });
  await until(() => crashing.state === "joined" && crashing.joinRef() !== firstJoinRef, 3000, "rejoin after phx_error");
  assert.deepEqual(await receive(crashing.push("echo", { again: 1 })), { echo: { again: 1 } });
});

test("11.53 phoenix.js: leave() gets its ok and the server terminates the channel", T, async () => {
  const obs = await observer(server);
  const socket = phxSocket(server);
  const ch = socket.channel("room:53js", {});
  await receive(ch.join());
  await receive(ch.leave());
  assert.equal(await obs.terminated("room:53js"), "shutdown:left");
});

test("11.57/58/60 right after phx_close / phx_error, a message always gets the unmatched-topic reply (100 cycles each)", { timeout: 30_000 }, async () => {
  // The client reacts to phx_close at once; the server must not accept (and then drop) a
  // message for the channel it has just closed. (A race: repeated to make it show.)
  const lost = [];
  const c = await connect(server, V2);
  for (const [how, ending] of [["phx_leave", "phx_close"], ["stop_normal", "phx_close"], ["crash", "phx_error"]]) {
    for (let i = 0; i < 100; i++) {
      const topic = `room:57r:${how}:${i}`;
      c.send(["1", "1", topic, "phx_join", {}]);
      await c.expectReply("1", "1", topic, "ok");
      c.send(["1", "2", topic, how, {}]);
      await c.waitFor((f) => f[2] === topic && f[3] === ending);
      c.skip();
      c.send(["1", "3", topic, "echo", {}]);
      try {
        assert.deepEqual(await c.next(500), c.reply(null, "3", topic, "error", unmatched), `${how} #${i}`);
      } catch (e) {
        lost.push(`${how} #${i}: ${e.message.startsWith("timeout") ? "no reply" : e.message.slice(0, 200)}`);
        c.skip();
      }
    }
  }
  assert.deepEqual(lost, [], "messages sent after phx_close/phx_error got no reply");
});
