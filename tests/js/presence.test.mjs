// Checklist §11 items 88-95 (Presence), the presence half of 64, and §12.8 items 105 (sorted
// keys, list order) and 109 (no leave for one's own old presence). Written against the spec and
// the conformance PresenceChannel: join params {user, meta}; after the join it tracks `user`
// with `meta` and pushes `presence_state`; events tracked / track_again / update /
// update_missing / untrack / list / crash.
import { describe, test, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { Presence } from "phoenix";
import { T, V2, startConformance, closeAll, connect, phxSocket, receive, until, sleep } from "./harness.mjs";

let server;

const isDiff = (f) => Array.isArray(f) && f[3] === "presence_diff";
const isState = (f) => Array.isArray(f) && f[3] === "presence_state";
const diff = (topic, joins, leaves) => [null, null, topic, "presence_diff", { joins, leaves }];

/**
 * Joins `topic` as `user` with `meta` on a raw V2 client: expects the join reply, then the
 * `presence_state` push and the client's own join diff in either order (spec §12.3). Returns
 * { c, state, ownDiff, ref } where ref is what `track` returned.
 */
async function pjoin(topic, user, meta = {}, jr = "1", c) {
  c = c ?? (await connect(server, V2));
  c.push(jr, jr, topic, "phx_join", { user, meta });
  await c.expectReply(jr, jr, topic, "ok", {}, `join ${topic} as ${user}`);
  const first = await c.next();
  const second = await c.next();
  const state = [first, second].find(isState);
  const ownDiff = [first, second].find(isDiff);
  assert.ok(state && ownDiff, `presence_state and own presence_diff after the join, got ${JSON.stringify([first, second])}`);
  c.push(jr, "tracked", topic, "tracked", {});
  const tracked = await c.next();
  assert.deepEqual([tracked[1], tracked[3], tracked[4].status], ["tracked", "phx_reply", "ok"], `track → {:ok, ref}: ${JSON.stringify(tracked)}`);
  const ref = tracked[4].response.phx_ref;
  assert.equal(typeof ref, "string");
  assert.ok(ref.length > 0);
  return { c, state, ownDiff, ref };
}

// The whole file runs three times: with the server's default presence config (diffs coalesced
// over `diff_window_ms` only in rooms of `coalesce_min_members`+ keys), with `diff_window_ms = 0`
// (one diff per change, as Phoenix), and with coalescing in every room.
for (const [label, toml] of [
  ["default config", ""],
  ["diff_window_ms = 0", "[presence]\ndiff_window_ms = 0"],
  ["diffs coalesced in every room", "[presence]\ndiff_window_ms = 50\ncoalesce_min_members = 1"],
]) {
describe(`presence (${label})`, () => {
  before(async () => { server = await startConformance(toml); });
  after(async () => { await closeAll(); await server.stop(); });
  afterEach(closeAll);

  test('11.88 track → {:ok, ref}; every subscriber gets [null,null,topic,"presence_diff",{joins:{"42":…},leaves:{}}]', T, async () => {
    const b = await pjoin("presence:88", "b");
    const a = await pjoin("presence:88", "42", { s: 1 });
    const expected = diff("presence:88", { 42: { metas: [{ s: 1, phx_ref: a.ref }] } }, {});
    assert.deepEqual(a.ownDiff, expected, "the tracking client gets its own join diff");
    assert.deepEqual(await b.c.next(), expected);
    await b.c.expectNone(100);
  });

  test("11.89 tracking the same (owner, topic, key) twice → {:error, already_tracked}, no diff", T, async () => {
    const b = await pjoin("presence:89", "b");
    const a = await pjoin("presence:89", "42", { s: 1 });
    await b.c.next(); // a's join diff
    a.c.push("1", "2", "presence:89", "track_again", {});
    const r = await a.c.next();
    assert.deepEqual([r[1], r[3], r[4].status], ["2", "phx_reply", "error"]);
    assert.match(r[4].response.reason, /already_?tracked/i);
    await a.c.expectNone(150);
    await b.c.expectNone(50);
  });

  test("11.90 list(topic) → {\"42\":{\"metas\":[…]}}; presence_state carries the channel's join_ref", T, async () => {
    const a = await pjoin("presence:90", "42", { s: 1 }, "7");
    const presences = { 42: { metas: [{ s: 1, phx_ref: a.ref }] } };
    assert.deepEqual(a.state, ["7", null, "presence:90", "presence_state", presences]);
    a.c.push("7", "8", "presence:90", "list", {});
    await a.c.expectReply("7", "8", "presence:90", "ok", presences);
  });

  test("11.91 update → one diff: joins with the new meta, phx_ref and phx_ref_prev; leaves with the old meta", T, async () => {
    const b = await pjoin("presence:91", "b");
    const a = await pjoin("presence:91", "42", { s: 1 });
    await b.c.next(); // a's join diff
    a.c.push("1", "2", "presence:91", "update", { s: 2 });
    const r = await a.c.waitFor((f) => f[1] === "2");
    assert.equal(r[4].status, "ok", JSON.stringify(r));
    const newRef = r[4].response.phx_ref;
    assert.equal(typeof newRef, "string");
    assert.notEqual(newRef, a.ref);
    assert.deepEqual(await b.c.next(), diff("presence:91",
      { 42: { metas: [{ s: 2, phx_ref: newRef, phx_ref_prev: a.ref }] } },
      { 42: { metas: [{ s: 1, phx_ref: a.ref }] } }));
    await b.c.expectNone(150);
    b.c.push("1", "3", "presence:91", "list", {});
    await b.c.expectReply("1", "3", "presence:91", "ok", {
      42: { metas: [{ s: 2, phx_ref: newRef, phx_ref_prev: a.ref }] },
      b: { metas: [{ phx_ref: b.ref }] },
    });
  });

  test("11.92 update on an untracked key → {:error, :nopresence}", T, async () => {
    const a = await pjoin("presence:92", "42");
    a.c.push("1", "2", "presence:92", "update_missing", {});
    const r = await a.c.next();
    assert.deepEqual([r[1], r[3], r[4].status], ["2", "phx_reply", "error"]);
    assert.match(r[4].response.reason, /no_?presence/i);
    await a.c.expectNone(100);
  });

  for (const [how, act] of [
    ["leaves", (c) => c.push("1", "9", "presence:93", "phx_leave", {})],
    ["crashes", (c) => c.push("1", "9", "presence:93", "crash", {})],
    ["untracks", (c) => c.push("1", "9", "presence:93", "untrack", {})],
  ]) {
    test(`11.93 the owner channel ${how} → a diff with its metas under leaves`, T, async () => {
      const b = await pjoin("presence:93", "b");
      const a = await pjoin("presence:93", "42", { s: 1 });
      await b.c.next(); // a's join diff
      act(a.c);
      assert.deepEqual(await b.c.next(), diff("presence:93", {}, { 42: { metas: [{ s: 1, phx_ref: a.ref }] } }));
      await b.c.expectNone(100);
      b.c.push("1", "10", "presence:93", "list", {});
      await b.c.expectReply("1", "10", "presence:93", "ok", { b: { metas: [{ phx_ref: b.ref }] } });
    });
  }

  test("11.64 a socket closed by the client → its presences leave", T, async () => {
    const b = await pjoin("presence:64", "b");
    const a = await pjoin("presence:64", "42", { s: 1 });
    await b.c.next();
    a.c.close();
    assert.deepEqual(await b.c.next(), diff("presence:64", {}, { 42: { metas: [{ s: 1, phx_ref: a.ref }] } }));
  });

  test("11.94 two sockets tracking key \"42\" → list shows one key with two metas (distinct phx_ref)", T, async () => {
    const a1 = await pjoin("presence:94", "42", { n: 1 });
    const a2 = await pjoin("presence:94", "42", { n: 2 });
    assert.notEqual(a1.ref, a2.ref);
    a2.c.push("1", "2", "presence:94", "list", {});
    const r = await a2.c.next();
    assert.deepEqual(Object.keys(r[4].response), ["42"]);
    const metas = r[4].response["42"].metas;
    assert.equal(metas.length, 2);
    const byN = [...metas].sort((x, y) => x.n - y.n);
    assert.deepEqual(byN, [{ n: 1, phx_ref: a1.ref }, { n: 2, phx_ref: a2.ref }]);
    // The second socket's presence_state already holds both.
    assert.equal(a2.state[4]["42"].metas.length, 2);
    // phoenix.js folds them into one key with two metas.
    const socket = phxSocket(server);
    const ch = socket.channel("presence:94", { user: "observer" });
    const presence = new Presence(ch);
    const synced = new Promise((r) => presence.onSync(r));
    await receive(ch.join());
    await synced;
    await until(() => presence.list().length === 2, 2000, "two keys");
    assert.deepEqual(presence.list((key, { metas }) => [key, metas.length]), [["42", 2], ["observer", 1]]);
  });

  test("11.95 a fetch/2 override adds \"user\" next to \"metas\" in presence_state and in both sides of every diff", T, async () => {
    // presence_fetch:* has a fetch hook adding {"user": {"name": key}}.
    const b = await pjoin("presence_fetch:95", "b");
    assert.deepEqual(b.state[4], { b: { metas: [{ phx_ref: b.ref }], user: { name: "b" } } });
    assert.deepEqual(b.ownDiff, diff("presence_fetch:95", { b: { metas: [{ phx_ref: b.ref }], user: { name: "b" } } }, {}));
    const a = await pjoin("presence_fetch:95", "42", { s: 1 });
    assert.deepEqual(await b.c.next(), diff("presence_fetch:95", { 42: { metas: [{ s: 1, phx_ref: a.ref }], user: { name: "42" } } }, {}));
    a.c.push("1", "2", "presence_fetch:95", "update", { s: 2 });
    const upd = await b.c.next();
    assert.deepEqual(upd[4].joins["42"].user, { name: "42" }, JSON.stringify(upd));
    assert.deepEqual(upd[4].leaves["42"], { metas: [{ s: 1, phx_ref: a.ref }], user: { name: "42" } });
    const newRef = upd[4].joins["42"].metas[0].phx_ref;
    b.c.push("1", "3", "presence_fetch:95", "list", {});
    await b.c.expectReply("1", "3", "presence_fetch:95", "ok", {
      42: { metas: [{ s: 2, phx_ref: newRef, phx_ref_prev: a.ref }], user: { name: "42" } },
      b: { metas: [{ phx_ref: b.ref }], user: { name: "b" } },
    });
    a.c.push("1", "4", "presence_fetch:95", "phx_leave", {});
    assert.deepEqual(await b.c.next(), diff("presence_fetch:95", {}, { 42: { metas: [{ s: 2, phx_ref: newRef, phx_ref_prev: a.ref }], user: { name: "42" } } }));
  });

  test("12.105 presence_state, presence_diff and metas have sorted keys; phoenix.js lists alice, bob, carol", T, async () => {
    for (const user of ["carol", "alice", "bob"]) await pjoin("presence:105", user, { z: 1, a: 2 });
    const zed = await pjoin("presence:105", "zed", { z: 1, a: 2 });
    const raw = zed.state.raw;
    const at = (s) => raw.indexOf(s);
    assert.ok(at('"alice"') < at('"bob"') && at('"bob"') < at('"carol"') && at('"carol"') < at('"zed"'), raw);
    assert.match(raw, /\{"metas":\[\{"a":2,"phx_ref":"[^"]+","z":1\}\]\}/, "meta keys sorted: " + raw);
    assert.match(zed.ownDiff.raw, /"presence_diff",\{"joins":\{"zed":\{"metas":\[\{"a":2,"phx_ref":"[^"]+","z":1\}\]\}\},"leaves":\{\}\}\]$/, zed.ownDiff.raw);
    // The official client lists the room in the server's (sorted) order.
    const socket = phxSocket(server);
    const ch = socket.channel("presence:105", { user: "zz" });
    const presence = new Presence(ch);
    const synced = new Promise((r) => presence.onSync(r));
    await receive(ch.join());
    await synced;
    await until(() => presence.list().length === 5, 2000, "five presences");
    assert.deepEqual(presence.list((key) => key), ["alice", "bob", "carol", "zed", "zz"]);
  });

  test("12.109 after a channel crash the socket receives no presence leave for its own old presence", T, async () => {
    const b = await pjoin("presence:109", "b");
    const a = await pjoin("presence:109", "a");
    await b.c.next(); // a's join diff
    a.c.push("1", "2", "presence:109", "crash", {});
    await a.c.expect("1", "1", "presence:109", "phx_error", { reason: "channel_crash" });
    assert.deepEqual(await b.c.next(), diff("presence:109", {}, { a: { metas: [{ phx_ref: a.ref }] } }), "others see the leave");
    await a.c.expectNone(200);
  });

  test("12.109 after a duplicate join the socket receives no presence leave for its own old presence", T, async () => {
    const b = await pjoin("presence:109d", "b");
    const a = await pjoin("presence:109d", "a", {}, "1");
    await b.c.next(); // a's join diff
    a.c.push("5", "5", "presence:109d", "phx_join", { user: "a", meta: {} });
    await a.c.expectReply("5", "5", "presence:109d", "ok", {});
    await a.c.expect("1", "1", "presence:109d", "phx_close", {});
    await sleep(200);
    const rest = a.c.frames.slice(a.c.cursor);
    const leaves = rest.filter((f) => isDiff(f) && Object.keys(f[4].leaves).length > 0);
    if (label === "diffs coalesced in every room") {
      // Documented trade-off (broker/src/presence.rs): where a window coalesces diffs, the
      // owner-exit leave of the old presence rides in the next coalesced diff, which the new
      // subscription receives. It names only the old phx_ref, so phoenix.js state stays right.
      const leftRefs = leaves.flatMap((f) => f[4].leaves.a?.metas ?? []).map((m) => m.phx_ref);
      assert.ok(leftRefs.every((r) => r === a.ref), "only the old presence can appear as a leave");
    } else {
      assert.deepEqual(leaves, [], "no leave diff for the old presence on its own socket");
    }
    const state = rest.find(isState);
    assert.ok(state, "presence_state after the rejoin");
    assert.equal(state[0], "5");
    assert.deepEqual(state[4].a.metas.length, 1);
    assert.notEqual(state[4].a.metas[0].phx_ref, a.ref, "the new presence_state holds the new phx_ref");
    // Others see the old presence leave and the new one join.
    await until(() => b.c.frames.filter(isDiff).length >= 3, 2000, "b sees leave and join");
    const bDiffs = b.c.frames.slice(b.c.cursor).filter(isDiff).map((f) => f[4]);
    const left = bDiffs.flatMap((d) => d.leaves.a?.metas ?? []).map((m) => m.phx_ref);
    const joined = bDiffs.flatMap((d) => d.joins.a?.metas ?? []).map((m) => m.phx_ref);
    assert.deepEqual(left, [a.ref]);
    assert.deepEqual(joined, [state[4].a.metas[0].phx_ref]);
  });

  test("7.5 phoenix.js Presence: onJoin, onLeave, onSync and list over two clients", T, async () => {
    const s1 = phxSocket(server), s2 = phxSocket(server);
    const c1 = s1.channel("presence:75", { user: "u1", meta: { mood: "ok" } });
    const p1 = new Presence(c1);
    const joins = [], leaves = [];
    p1.onJoin((key, current, newPres) => joins.push([key, current ? current.metas.length : 0, newPres.metas.length]));
    p1.onLeave((key, current, left) => leaves.push([key, current.metas.length, left.metas.length]));
    let syncs = 0;
    p1.onSync(() => { syncs++; });
    await receive(c1.join());
    await until(() => p1.list().length === 1, 2000, "u1 listed");
    assert.deepEqual(p1.list((k, { metas }) => [k, metas.map((m) => m.mood)]), [["u1", ["ok"]]]);
    const c2 = s2.channel("presence:75", { user: "u2", meta: { mood: "hi" } });
    await receive(c2.join());
    await until(() => p1.list().length === 2, 2000, "u2 listed");
    assert.deepEqual(p1.list((k) => k), ["u1", "u2"]);
    assert.ok(joins.some(([k, cur, n]) => k === "u2" && cur === 0 && n === 1), JSON.stringify(joins));
    // A meta update arrives as one diff; the key stays with one (new) meta.
    await receive(c2.push("update", { mood: "busy" }));
    await until(() => p1.list((k, { metas }) => k === "u2" && metas[0].mood === "busy").includes(true), 2000, "updated meta");
    assert.equal(p1.list((k, { metas }) => metas.length).join(), "1,1");
    await receive(c2.leave());
    await until(() => p1.list().length === 1, 2000, "u2 left");
    assert.ok(leaves.some(([k, cur, l]) => k === "u2" && cur === 0 && l === 1), JSON.stringify(leaves));
    assert.ok(syncs >= 4);
  });
});
}
