// Several broker processes as one endpoint over a real Redis (issue #16): broadcasts reach
// clients on every node, presence converges (the phoenix.js Presence model on each node), a
// node killed with SIGKILL leaves every list in time, a restarted node rejoins without zombies,
// and traffic resumes after Redis restarts.
//
// Redis: with REDIS_URL set (e.g. redis://127.0.0.1:6379) the cluster tests use that server,
// under a channel prefix of their own per run; without it they start a private `redis-server` on
// a free port. The Redis restart test always starts its own (it kills it). REDIS_SERVER_BIN names
// the binary (default: `redis-server` on PATH; `.ci/run` installs Debian's `redis-server` if it
// is missing).
import { describe, test, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { createServer } from "node:net";
import { Presence } from "phoenix";
import { startServer, phxSocket, receive, until, closeAll, sleep, configFile, metric, phoenixToken, TEST_SECRET_KEY_BASE } from "./harness.mjs";

const REDIS_SERVER_BIN = process.env.REDIS_SERVER_BIN ?? "redis-server";
const TC = { timeout: 30_000 };

/** A free TCP port on 127.0.0.1 (bound, read, released). */
async function freePort() {
  const srv = createServer();
  srv.listen(0, "127.0.0.1");
  await once(srv, "listening");
  const { port } = srv.address();
  srv.close();
  await once(srv, "close");
  return port;
}

/** A private redis-server; `restart()` kills it and starts it again on the same port. */
async function startRedis() {
  const port = await freePort();
  let proc;
  const launch = async () => {
    proc = spawn(REDIS_SERVER_BIN, ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    proc.stdout.on("data", (d) => { out += d; });
    await until(() => out.includes("Ready to accept connections"), 5000, "redis-server ready");
  };
  await launch();
  return {
    url: `redis://127.0.0.1:${port}`,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill("SIGKILL");
        await once(proc, "exit");
      }
    },
    async restart(downMs = 500) {
      await this.stop();
      await sleep(downMs);
      await launch();
    },
  };
}

/** REDIS_URL's server (left running), or a private one. */
async function sharedOrPrivateRedis() {
  if (process.env.REDIS_URL) return { url: process.env.REDIS_URL, stop: async () => {} };
  return startRedis();
}

/** Channels of this run only (a shared Redis may carry other runs and other clusters). */
const PREFIX = `test${process.pid}x${Date.now()}`;

/** A broker node of the cluster on `redis`; `listen` fixes the address (for restarts). */
async function startNode(redis, name, { listen = "127.0.0.1:0", toml = "", defaults = false } = {}) {
  // Short periods keep the suite fast; `defaults` runs the shipped ones (1 s / 3 s).
  const periods = defaults ? "" : "heartbeat_ms = 200\ndown_period_ms = 1000\n";
  const cfg = configFile(`node_name = "${name}"\n${toml}\n[cluster]\nredis_url = "${redis.url}"\nchannel_prefix = "${PREFIX}"\n${periods}`);
  return startServer(undefined, ["--config", cfg, "--listen", listen]);
}

/** A user: a phoenix.js socket + channel + Presence on `topic` at `node`. */
async function user(node, topic, userId, opts = {}) {
  const socket = phxSocket(node, { params: { user_id: userId }, ...opts });
  const channel = socket.channel(topic, { name: userId });
  const presence = new Presence(channel);
  const got = [];
  channel.on("msg", (m) => got.push(m));
  await receive(channel.join());
  return { socket, channel, presence, got };
}

const who = (u) => JSON.stringify(Object.fromEntries(u.presence.list((key, { metas }) => [key, metas.length]).sort()));

async function expectWho(users, expected, what, timeoutMs = 3000) {
  const want = JSON.stringify(Object.fromEntries(Object.entries(expected).sort()));
  for (const u of users) {
    await until(() => who(u) === want, timeoutMs, `${what}: ${want}`).catch((e) => {
      throw new Error(`${e.message}, got ${who(u)}`);
    });
  }
}

describe("cluster of three nodes over Redis", () => {
  let redis;
  let nodes;
  before(async () => {
    redis = await sharedOrPrivateRedis();
    nodes = [];
    const toml = `[[channels.policies]]\ntopics = ["from:*"]\nevents = "broadcast_from"\n`;
    for (const n of ["a", "b", "c"]) nodes.push(await startNode(redis, n, { toml }));
  });
  after(async () => {
    await closeAll();
    for (const n of nodes) await n.stop();
    await redis.stop();
  });
  afterEach(closeAll);

  test("a broadcast on one node reaches the clients of every node, once", TC, async () => {
    const users = [];
    for (const [i, node] of nodes.entries()) users.push(await user(node, "room:bcast", `u${i}`));
    await receive(users[0].channel.push("msg", { body: "from a" }));
    await receive(users[2].channel.push("msg", { body: "from c" }));
    for (const u of users) {
      await until(() => u.got.length >= 2, 3000, "both broadcasts everywhere");
    }
    await sleep(200);
    for (const u of users) {
      assert.deepEqual(u.got.map((m) => m.body).sort(), ["from a", "from c"], "each broadcast exactly once on each node");
    }
    // Each node published its own broadcast once and got the other one from Redis.
    assert.ok((await metric(nodes[1], "phx_broker_cluster_received_total")) >= 2);
  });

  test("broadcast_from skips only the sender, on every node", TC, async () => {
    const sender = await user(nodes[0], "from:x", "sender");
    const sameNode = await user(nodes[0], "from:x", "same-node");
    const other = await user(nodes[1], "from:x", "other-node");
    await receive(sender.channel.push("msg", { body: "hi" }));
    await until(() => sameNode.got.length === 1 && other.got.length === 1, 3000, "both others got it");
    await sleep(200);
    assert.equal(sender.got.length, 0, "the sender does not get its own broadcast_from");
    assert.equal(other.got.length, 1);
  });

  test("a node subscribes to a topic's channel only while it has subscribers of it", TC, async () => {
    // Settled, a node holds its two own channels (presence, and its direct one) and nothing else.
    const subs = (node) => metric(node, "phx_broker_cluster_subscriptions");
    const settle = async (want, what) => {
      const deadline = Date.now() + 3000;
      for (;;) {
        const got = await Promise.all(nodes.map(subs));
        if (JSON.stringify(got) === JSON.stringify(want)) return;
        if (Date.now() > deadline) throw new Error(`${what}: subscriptions per node ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
        await sleep(50);
      }
    };
    await settle([2, 2, 2], "before");
    const u = await user(nodes[1], "room:only-b", "solo");
    await settle([2, 3, 2], "one subscriber on b: only b subscribes to the topic");
    // A publish from a node without subscribers of the topic still reaches b's subscriber.
    const other = await user(nodes[0], "room:elsewhere", "x");
    await settle([3, 3, 2], "a subscribes to its own topic only");
    u.channel.push("msg", { body: "self" });
    await until(() => u.got.length === 1, 3000, "own broadcast");
    u.socket.disconnect();
    other.socket.disconnect();
    await settle([2, 2, 2], "after the last subscribers left");
  });

  test("presence converges across nodes: joins, updates and leaves", TC, async () => {
    const topic = "room:presence";
    const alice = await user(nodes[0], topic, "alice");
    const bob = await user(nodes[1], topic, "bob");
    const carol = await user(nodes[2], topic, "carol");
    const all = [alice, bob, carol];
    await expectWho(all, { alice: 1, bob: 1, carol: 1 }, "three users on three nodes");
    // A second tab of alice on another node: two metas under one key everywhere.
    const alice2 = await user(nodes[2], topic, "alice");
    await expectWho([...all, alice2], { alice: 2, bob: 1, carol: 1 }, "alice in two tabs on two nodes");
    // An update on node b is seen on a and c.
    await receive(bob.channel.push("presence:update", { status: "away" }));
    for (const u of [alice, carol]) {
      await until(() => u.presence.list((k, { metas }) => (k === "bob" ? metas[0].status : null)).includes("away"), 3000, "bob away");
    }
    // Leaves.
    carol.socket.disconnect();
    alice2.socket.disconnect();
    await expectWho([alice, bob], { alice: 1, bob: 1 }, "carol and alice's second tab left");
  });

  test("HTTP API broadcast and disconnect work cluster-wide", TC, async () => {
    // Nodes with identity and the API: sockets carry ids, the API can close them from any node.
    const api = "test-key-0123456789";
    const toml = `[auth]\nkind = "phoenix_token"\nsecret_key_base = "${TEST_SECRET_KEY_BASE}"\nsalt = "user socket"\n[api]\nkey = "${api}"\n[cluster]\nchannel_prefix = "${PREFIX}api"\n`;
    const x = await startServer(undefined, ["--config", configFile(`node_name = "x"\n${toml.replace("[cluster]\nchannel_prefix", `[cluster]\nredis_url = "${redis.url}"\nchannel_prefix`)}`)]);
    const y = await startServer(undefined, ["--config", configFile(`node_name = "y"\n${toml.replace("[cluster]\nchannel_prefix", `[cluster]\nredis_url = "${redis.url}"\nchannel_prefix`)}`)]);
    try {
      const socket = phxSocket(y, { params: { token: phoenixToken("dave") }, reconnectAfterMs: () => 60_000 });
      const channel = socket.channel("room:api", {});
      const got = [];
      channel.on("news", (m) => got.push(m));
      await receive(channel.join());
      const post = (path, body) => fetch(`${x.http}${path}`, { method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${api}` }, body: JSON.stringify(body) });
      const r = await post("/api/broadcast", { topic: "room:api", event: "news", payload: { n: 1 } });
      assert.ok(r.ok, `broadcast via node x: ${r.status}`);
      await until(() => got.length === 1, 3000, "API broadcast on x reached y's client");
      let closed = false;
      socket.onClose(() => { closed = true; });
      const d = await post("/api/disconnect", { socket_id: "user_socket:dave" });
      assert.ok(d.ok, `disconnect via node x: ${d.status} ${await d.text()}`);
      await until(() => closed, 3000, "y's socket closed by x's API");
    } finally {
      await closeAll();
      await x.stop();
      await y.stop();
    }
  });
});

describe("Redis unreachable at start", () => {
  test("the node does not start, and says which Redis and why", TC, async () => {
    const port = await freePort(); // nothing listens there
    const cfg = configFile(`[cluster]\nredis_url = "redis://:secret@127.0.0.1:${port}"\n`);
    const proc = spawn(process.env.BROKER_BIN ?? new URL("../../target/debug/broker", import.meta.url).pathname, ["--config", cfg], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    proc.stdout.on("data", (d) => { out += d; });
    proc.stderr.on("data", (d) => { out += d; });
    const [code] = await once(proc, "exit");
    assert.notEqual(code, 0, "exits with an error");
    assert.match(out, new RegExp(`cannot reach Redis at redis://<redacted>@127\\.0\\.0\\.1:${port}`), out);
    assert.ok(!out.includes("secret"), "the password is not printed");
    assert.ok(!out.includes("listening on"), "never listened");
  });
});

describe("node and Redis faults", () => {
  let redis;
  before(async () => { redis = await startRedis(); });
  after(async () => { await closeAll(); await redis.stop(); });

  test("kill -9 of a node: its users leave every list within 5 s, the rest is unaffected; a restart rejoins without zombies", TC, async () => {
    const port = await freePort();
    // The shipped periods (heartbeat 1 s, down after 3 s): the 5 s goal holds with defaults.
    const a = await startNode(redis, "a", { defaults: true });
    const b = await startNode(redis, "b", { defaults: true });
    let c = await startNode(redis, "c", { listen: `127.0.0.1:${port}`, defaults: true });
    try {
      const topic = "room:faults";
      const alice = await user(a, topic, "alice");
      const bob = await user(b, topic, "bob");
      const carol = await user(c, topic, "carol", { reconnectAfterMs: () => 200, rejoinAfterMs: () => 200 });
      await expectWho([alice, bob, carol], { alice: 1, bob: 1, carol: 1 }, "all three");
      c.proc.kill("SIGKILL");
      const killedAt = Date.now();
      await expectWho([alice, bob], { alice: 1, bob: 1 }, "carol gone after kill -9", 5000);
      const took = Date.now() - killedAt;
      assert.ok(took <= 5000, `carol left within 5 s (${took} ms)`);
      console.log(`# kill -9: carol left the other nodes' lists after ${took} ms`);
      // The survivors still talk.
      await receive(alice.channel.push("msg", { body: "still here" }));
      await until(() => bob.got.some((m) => m.body === "still here"), 3000, "a→b broadcast after the kill");
      // Restart c on the same address: carol's phoenix.js reconnects and rejoins; exactly one
      // carol everywhere (the old incarnation's presence is gone, not doubled).
      c = await startNode(redis, "c", { listen: `127.0.0.1:${port}`, defaults: true });
      await expectWho([alice, bob, carol], { alice: 1, bob: 1, carol: 1 }, "carol back once", 8000);
      await sleep(3500); // past a down period: nothing reappears or vanishes
      await expectWho([alice, bob, carol], { alice: 1, bob: 1, carol: 1 }, "still no zombie");
    } finally {
      await closeAll();
      for (const n of [a, b, c]) await n.stop();
    }
  });

  test("Redis restart: local traffic continues, cross-node traffic resumes, presence reconverges", TC, async () => {
    const a = await startNode(redis, "ra");
    const b = await startNode(redis, "rb");
    try {
      const topic = "room:redis";
      const alice = await user(a, topic, "alice");
      const alice2 = await user(a, topic, "alice-local");
      const bob = await user(b, topic, "bob");
      await expectWho([alice, bob], { alice: 1, "alice-local": 1, bob: 1 }, "before the restart");
      await redis.stop();
      // Local traffic on a node is untouched while Redis is down.
      await receive(alice.channel.push("msg", { body: "local" }));
      await until(() => alice2.got.some((m) => m.body === "local"), 3000, "local broadcast without Redis");
      await sleep(300);
      await redis.restart(0);
      // Cross-node broadcasts resume once the nodes have reconnected and resubscribed.
      const deadline = Date.now() + 10_000;
      for (let i = 0; !bob.got.some((m) => m.body?.startsWith("after")); i++) {
        assert.ok(Date.now() < deadline, "a→b broadcasts resume within 10 s of Redis coming back");
        alice.channel.push("msg", { body: `after ${i}` });
        await sleep(200);
      }
      assert.ok((await metric(a, "phx_broker_cluster_disconnects_total")) >= 1, "the outage was counted");
      // Presence: the lists agree again, and a join after the restart reaches the other node.
      const carol = await user(b, topic, "carol");
      await expectWho([alice, bob, carol], { alice: 1, "alice-local": 1, bob: 1, carol: 1 }, "after the Redis restart", 8000);
    } finally {
      await closeAll();
      await a.stop();
      await b.stop();
    }
  });
});
