// The standalone broker's presence, driven by the official phoenix.js `Presence` helper:
// onSync / onJoin / onLeave, list with a chooser, multi-tab keys, meta updates through the
// configured client event, leave on disconnect, rejoin after a reconnect, and coalesced diffs.
// After every step each observer's list is checked against the expected users.
import { test, describe, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { Presence } from "phoenix";
import { startServer, phxSocket, receive, until, closeAll, sleep, configFile, T } from "./harness.mjs";

/** A user: a phoenix.js socket + channel + Presence on `topic`. */
async function user(server, topic, userId, joinParams = {}) {
  const socket = phxSocket(server, { params: { user_id: userId } });
  const channel = socket.channel(topic, joinParams);
  const presence = new Presence(channel);
  const events = [];
  presence.onJoin((key, current, joined) => events.push(["join", key, joined.metas.length]));
  presence.onLeave((key, current, left) => events.push(["leave", key, left.metas.length]));
  let syncs = 0;
  presence.onSync(() => { syncs++; });
  await receive(channel.join());
  return { socket, channel, presence, events, syncs: () => syncs };
}

/** `{key: metaCount}` as phoenix.js lists it (list with a chooser), keys sorted. */
const who = (u) => JSON.stringify(Object.fromEntries(u.presence.list((key, { metas }) => [key, metas.length]).sort()));

async function expectWho(users, expected, what) {
  const want = JSON.stringify(Object.fromEntries(Object.entries(expected).sort()));
  for (const u of users) {
    await until(() => who(u) === want, 3000, `${what}: ${want}`).catch((e) => {
      throw new Error(`${e.message}, got ${who(u)}`);
    });
  }
}


for (const [label, toml] of [
  ["one diff per change", "[presence]\ndiff_window_ms = 0"],
  ["coalesced diffs (100 ms window in every room)", "[presence]\ndiff_window_ms = 100\ncoalesce_min_members = 1"],
]) {
  describe(`standalone presence, ${label}`, () => {
    let server;
    before(async () => { server = await startServer(undefined, ["--config", configFile(toml)]); });
    after(async () => { await closeAll(); await server.stop(); });
    afterEach(closeAll);

    test("onSync/onJoin/onLeave and list with a chooser as users come and go", T, async () => {
      const topic = "room:steps";
      const alice = await user(server, topic, "alice", { name: "Alice" });
      await expectWho([alice], { alice: 1 }, "alice alone");
      assert.ok(alice.syncs() >= 1, "onSync fired");
      const bob = await user(server, topic, "bob", { name: "Bob" });
      await expectWho([alice, bob], { alice: 1, bob: 1 }, "alice and bob");
      assert.ok(alice.events.some((e) => e[0] === "join" && e[1] === "bob"), "alice saw bob join");
      // The meta carries the allow-listed join params and online_at, nothing else.
      const meta = alice.presence.list((k, { metas }) => [k, metas[0]]).find(([k]) => k === "bob")[1];
      assert.equal(meta.name, "Bob");
      assert.match(meta.online_at, /^\d+$/);
      assert.equal(typeof meta.phx_ref, "string");
      bob.socket.disconnect();
      await expectWho([alice], { alice: 1 }, "bob disconnected");
      assert.ok(alice.events.some((e) => e[0] === "leave" && e[1] === "bob"), "alice saw bob leave");
    });

    test("multi-tab: one key with one meta per tab; closing a tab removes only its meta", T, async () => {
      const topic = "room:tabs";
      const obs = await user(server, topic, "observer");
      const tab1 = await user(server, topic, "carol");
      const tab2 = await user(server, topic, "carol");
      await expectWho([obs, tab1, tab2], { carol: 2, observer: 1 }, "two tabs");
      tab1.channel.leave();
      await expectWho([obs, tab2], { carol: 1, observer: 1 }, "one tab left");
    });

    test("meta update through the configured client event: one diff, key stays, new meta", T, async () => {
      const topic = "room:update";
      const obs = await user(server, topic, "obs");
      const dave = await user(server, topic, "dave", { name: "Dave", status: "here" });
      await expectWho([obs], { dave: 1, obs: 1 }, "before update");
      const before = obs.presence.list((k, { metas }) => [k, metas[0]]).find(([k]) => k === "dave")[1];
      await receive(dave.channel.push("presence:update", { status: "away", secret: "dropped" }));
      await until(() => obs.presence.list((k, { metas }) => metas[0].status).includes("away"), 3000, "status away");
      const after = obs.presence.list((k, { metas }) => [k, metas]).find(([k]) => k === "dave")[1];
      assert.equal(after.length, 1, "still one meta");
      assert.equal(after[0].status, "away");
      assert.equal(after[0].name, "Dave", "unchanged fields kept");
      assert.equal(after[0].secret, undefined, "fields outside the allow-list are not copied");
      assert.equal(after[0].phx_ref_prev, before.phx_ref);
      // An oversized meta is refused with an error reply.
      const err = await receive(dave.channel.push("presence:update", { status: "x".repeat(5000) }), "error");
      assert.equal(err.reason, "meta too large");
    });

    test("rejoin after reconnect: the list is rebuilt from presence_state, no stale metas", T, async () => {
      const topic = "room:reconnect";
      const obs = await user(server, topic, "obs");
      const erin = await user(server, topic, "erin");
      await expectWho([obs, erin], { erin: 1, obs: 1 }, "before reconnect");
      // A server-side close of erin's transport: phoenix.js reconnects and rejoins.
      erin.socket.conn.close(4000, "test drop");
      await until(() => erin.socket.isConnected() && erin.channel.state === "joined", 5000, "erin rejoined");
      await expectWho([obs, erin], { erin: 1, obs: 1 }, "after reconnect");
    });

    test("leave and rejoin inside one window: observers end with only the new meta", T, async () => {
      const topic = "room:flap";
      const obs = await user(server, topic, "obs");
      const frank = await user(server, topic, "frank");
      await expectWho([obs], { frank: 1, obs: 1 }, "frank present");
      const oldRef = obs.presence.list((k, { metas }) => [k, metas[0].phx_ref]).find(([k]) => k === "frank")[1];
      frank.channel.leave();
      const again = await user(server, topic, "frank");
      await sleep(250);
      await expectWho([obs, again], { frank: 1, obs: 1 }, "frank back");
      const refs = obs.presence.list((k, { metas }) => [k, metas.map((m) => m.phx_ref)]).find(([k]) => k === "frank")[1];
      assert.equal(refs.length, 1);
      assert.notEqual(refs[0], oldRef, "the old meta is gone");
    });

    test("a burst of joins and leaves converges for every member", T, async () => {
      const topic = "room:burst";
      const members = [];
      for (let i = 0; i < 6; i++) members.push(await user(server, topic, `m${i}`));
      const expected = Object.fromEntries(members.map((_, i) => [`m${i}`, 1]));
      await expectWho(members, expected, "all six");
      members[1].channel.leave();
      members[3].socket.disconnect();
      const late = await user(server, topic, "late");
      const stay = [members[0], members[2], members[4], members[5], late];
      await expectWho(stay, { late: 1, m0: 1, m2: 1, m4: 1, m5: 1 }, "after the burst");
    });
  });
}
