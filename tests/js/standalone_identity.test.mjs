// The standalone broker behind an app: verified identity (Phoenix.Token minted here by an
// independent implementation of spec §9, checked against the spec's vector; JWT HS256), the
// connect, join and event webhooks (a real HTTP server in this process), join by claims,
// event policies, sender stamps, presence keyed by the verified id, and per-connection rates.
// The clients are the official phoenix.js.
import { test, describe, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import crypto from "node:crypto";
import { Presence } from "phoenix";
import { startServer, phxSocket, receive, nextEvent, until, closeAll, sleep, handshake, metric, configFile, phoenixToken, TEST_SECRET_KEY_BASE, T } from "./harness.mjs";

const SECRET = TEST_SECRET_KEY_BASE;
const SALT = "user socket";
const b64u = (buf) => Buffer.from(buf).toString("base64url");

/** An HS256 JWT. */
function jwt(claims, secret = "jwt-secret-of-at-least-32-bytes!!") {
  const signed = `${b64u(JSON.stringify({ alg: "HS256", typ: "JWT" }))}.${b64u(JSON.stringify(claims))}`;
  return `${signed}.${b64u(crypto.createHmac("sha256", secret).update(signed).digest())}`;
}

const now = () => Math.floor(Date.now() / 1000);

/** The app's backend: answers the broker's webhooks, records what it was asked. */
async function backend() {
  const calls = [];
  const server = http.createServer((req, res) => {
    let body = "";
    req.on("data", (d) => { body += d; });
    req.on("end", async () => {
      const b = body ? JSON.parse(body) : {};
      calls.push({ path: req.url, body: b, auth: req.headers.authorization });
      const json = (v, status = 200) => { res.writeHead(status, { "content-type": "application/json" }); res.end(JSON.stringify(v)); };
      switch (req.url) {
        case "/connect":
          if (b.params?.deny) return json({ error: "denied" });
          return json({ user_id: `hook-${b.params?.name}`, claims: { role: b.params?.role ?? "member" } });
        case "/join":
          if (b.claims?.role !== "vip") return json({ status: "error", response: { reason: "vip only" } });
          return json({ status: "ok", response: { welcome: b.user_id }, meta: { badge: "gold" } });
        case "/event":
          if (b.event === "fail") return json({ error: "nope" });
          return json({ reply: { status: "ok", response: { echoed: b.payload.text } }, broadcasts: [{ event: "shout", payload: { text: b.payload.text, by: b.user_id } }] });
        case "/slow":
          await sleep(2000);
          return json({ status: "ok" });
        case "/garbage":
          res.writeHead(200, { "content-type": "text/plain" });
          return res.end("this is not json");
        case "/huge":
          return json({ status: "ok", response: { pad: "x".repeat(200_000) } });
        case "/fail500":
          return json({ oops: true }, 500);
        default:
          return json({}, 404);
      }
    });
  });
  server.listen(0, "127.0.0.1");
  await new Promise((r) => server.once("listening", r));
  const url = `http://127.0.0.1:${server.address().port}`;
  return { url, calls, close: () => new Promise((r) => { server.closeAllConnections?.(); server.close(r); }) };
}

/** A port nothing listens on. */
async function deadPort() {
  const s = http.createServer();
  s.listen(0, "127.0.0.1");
  await new Promise((r) => s.once("listening", r));
  const port = s.address().port;
  await new Promise((r) => s.close(r));
  return port;
}

test("the JS token minting matches the spec's Phoenix.Token vector (§9.5)", () => {
  assert.equal(
    phoenixToken(123, { signedAtMs: 1_700_000_000_000 }),
    "SFMyNTY.g2gDYXtuBgAAaOXPiwFiAAFRgA.VcsHC2FSYarnfLbJburewkRzMmG4YMnLAZbYuo00Ycc",
  );
});

describe("Phoenix.Token identity", () => {
  let server;
  before(async () => {
    server = await startServer(undefined, ["--config", configFile(`
[auth]
kind = "phoenix_token"
secret_key_base = "${SECRET}"
salt = "${SALT}"

[limits]
messages_per_s = 5
messages_burst = 5
`)]);
  });
  after(async () => { await closeAll(); await server.stop(); });
  afterEach(closeAll);

  test("a token in the connect params, or as phoenix.js authToken, identifies the socket", T, async () => {
    const alice = phxSocket(server, { params: { token: phoenixToken("alice"), user_id: "mallory" } });
    const bob = phxSocket(server, { authToken: phoenixToken("bob") });
    const ca = alice.channel("room:1", { name: "Alice" });
    const cb = bob.channel("room:1", { name: "Bob" });
    const pa = new Presence(ca);
    await receive(ca.join());
    await receive(cb.join());
    // Presence is keyed by the verified id, never the self-declared user_id param.
    await until(() => JSON.stringify(pa.list((k) => k).sort()) === '["alice","bob"]', 3000, "alice and bob listed");
    // Relayed messages carry the verified sender, whatever the client claims.
    const got = nextEvent(cb, "new_msg");
    await receive(ca.push("new_msg", { body: "hi", sender: "bob" }));
    assert.deepEqual(await got, { body: "hi", sender: "alice" });
  });

  test("forged, expired, future-dated, wrongly salted and missing tokens are refused with 403", T, async () => {
    const good = phoenixToken("carol");
    const [head, payload, mac] = good.split(".");
    const forged = `${head}.${b64u(Buffer.from(Buffer.from(payload, "base64url").toString("latin1").replace("carol", "admin"), "latin1"))}.${mac}`;
    const cases = {
      forged,
      expired: phoenixToken("carol", { signedAtMs: Date.now() - 3_600_000, maxAge: 60 }),
      future: phoenixToken("carol", { signedAtMs: Date.now() + 3_600_000 }),
      wrongSalt: phoenixToken("carol", { salt: "other salt" }),
      garbage: "not.a.token",
    };
    for (const [name, token] of Object.entries(cases)) {
      const r = await handshake(server, { query: `vsn=2.0.0&token=${encodeURIComponent(token)}` });
      assert.equal(r.status, 403, name);
    }
    assert.equal((await handshake(server, { query: "vsn=2.0.0" })).status, 403, "no token");
    assert.equal((await handshake(server, { query: `vsn=2.0.0&token=${encodeURIComponent(good)}` })).status, 101, "the good one");
  });

  test("client events beyond the per-connection rate get an error reply", T, async () => {
    const s = phxSocket(server, { params: { token: phoenixToken("dave") } });
    const ch = s.channel("chat:rate", {});
    await receive(ch.join());
    const replies = await Promise.all(Array.from({ length: 8 }, (_, i) =>
      new Promise((resolve) => ch.push("m", { i }).receive("ok", () => resolve("ok")).receive("error", (e) => resolve(e.reason)))));
    assert.deepEqual(replies.filter((r) => r === "ok").length, 5, JSON.stringify(replies));
    assert.ok(replies.includes("rate limited"), JSON.stringify(replies));
  });
});

describe("JWT identity and claims", () => {
  let server;
  before(async () => {
    server = await startServer(undefined, ["--config", configFile(`
[auth]
kind = "jwt"
algorithm = "hs256"
secret = "jwt-secret-of-at-least-32-bytes!!"
audience = ["chat"]
issuer = ["my-app"]

[[channels.policies]]
topics = ["team:*"]
join = "claims"
join_claim = "teams"
events = "broadcast_from"
allowed_events = ["say"]
max_payload_bytes = 100

[[channels.policies]]
topics = ["readonly:*"]
events = "deny"
`)]);
  });
  after(async () => { await closeAll(); await server.stop(); });
  afterEach(closeAll);

  const claims = (sub, extra = {}) => ({ sub, aud: "chat", iss: "my-app", exp: now() + 600, ...extra });

  test("valid JWTs connect; expired, not-yet-valid, wrong audience, issuer or secret get 403", T, async () => {
    const q = (t) => `vsn=2.0.0&token=${encodeURIComponent(t)}`;
    assert.equal((await handshake(server, { query: q(jwt(claims("erin"))) })).status, 101);
    assert.equal((await handshake(server, { query: q(jwt(claims("erin", { exp: now() - 600 }))) })).status, 403, "expired");
    assert.equal((await handshake(server, { query: q(jwt(claims("erin", { nbf: now() + 600 }))) })).status, 403, "nbf");
    assert.equal((await handshake(server, { query: q(jwt(claims("erin", { aud: "other" }))) })).status, 403, "aud");
    assert.equal((await handshake(server, { query: q(jwt(claims("erin", { iss: "evil" }))) })).status, 403, "iss");
    assert.equal((await handshake(server, { query: q(jwt(claims("erin"), "wrong-secret-of-at-least-32-bytes!")) })).status, 403, "secret");
  });

  test("join by claims; broadcast_from, the allow-list, the size limit and deny", T, async () => {
    const a = phxSocket(server, { params: { token: jwt(claims("ann", { teams: ["team:red", "team:blue:*"] })) } });
    const b = phxSocket(server, { params: { token: jwt(claims("ben", { teams: ["team:red"] })) } });
    const ra = a.channel("team:red", {});
    const rb = b.channel("team:red", {});
    await receive(ra.join());
    await receive(rb.join());
    await receive(a.channel("team:blue:ops", {}).join());
    const refused = await receive(b.channel("team:green", {}).join(), "error");
    assert.equal(refused.reason, "unauthorized");
    // broadcast_from: the other member gets it, stamped; the sender does not.
    const seenByA = [];
    ra.on("say", (m) => seenByA.push(m));
    const got = nextEvent(rb, "say");
    await receive(ra.push("say", { text: "go" }));
    assert.deepEqual(await got, { text: "go", sender: "ann" });
    await sleep(100);
    assert.equal(seenByA.length, 0, "broadcast_from skips the sender");
    assert.equal((await receive(ra.push("other", {}), "error")).reason, "event not allowed");
    assert.equal((await receive(ra.push("say", { text: "x".repeat(200) }), "error")).reason, "payload too large");
    const ro = a.channel("readonly:news", {});
    await receive(ro.join());
    assert.equal((await receive(ro.push("say", {}), "error")).reason, "not allowed");
  });
});

describe("webhooks", () => {
  let server, app, dead;
  before(async () => {
    app = await backend();
    dead = await deadPort();
    server = await startServer(undefined, ["--config", configFile(`
[identity]
connect_url = "${app.url}/connect"

[webhooks]
timeout_ms = 400
retries = 1
secret = "hook-secret"

[[channels.policies]]
topics = ["vip:*", "room:vip"]
join = "webhook"
join_url = "${app.url}/join"
events = "webhook"
event_url = "${app.url}/event"

[[channels.policies]]
topics = ["slow:*"]
join = "webhook"
join_url = "${app.url}/slow"

[[channels.policies]]
topics = ["garbage:*"]
join = "webhook"
join_url = "${app.url}/garbage"

[[channels.policies]]
topics = ["down:*"]
join = "webhook"
join_url = "http://127.0.0.1:${dead}/join"

[[channels.policies]]
topics = ["huge:*"]
join = "webhook"
join_url = "${app.url}/huge"

[[channels.policies]]
topics = ["err500:*"]
events = "webhook"
event_url = "${app.url}/fail500"
`)]);
  });
  after(async () => { await closeAll(); await server.stop(); await app.close(); });
  afterEach(closeAll);

  test("the connect webhook names the user and gives claims; its refusal is a 403", T, async () => {
    assert.equal((await handshake(server, { query: "vsn=2.0.0&name=zed&deny=1" })).status, 403);
    const s = phxSocket(server, { params: { name: "vic", role: "vip" } });
    const ch = s.channel("vip:lounge", { hello: 1 });
    const reply = await receive(ch.join());
    assert.deepEqual(reply, { welcome: "hook-vic" });
    const call = app.calls.find((c) => c.path === "/join");
    assert.equal(call.body.user_id, "hook-vic");
    assert.deepEqual(call.body.payload, { hello: 1 });
    assert.equal(call.auth, "Bearer hook-secret");
    // The join webhook's meta lands in presence? (vip:* has no presence here: checked via reply.)
    const member = phxSocket(server, { params: { name: "max" } });
    const refused = await receive(member.channel("vip:lounge", {}).join(), "error");
    assert.equal(refused.reason, "vip only");
  });

  test("the join webhook's meta lands in the presence of a presence topic", T, async () => {
    const s = phxSocket(server, { params: { name: "pat", role: "vip" } });
    const ch = s.channel("room:vip", { name: "Pat" });
    const presence = new Presence(ch);
    await receive(ch.join());
    await until(() => presence.list().length === 1, 3000, "pat listed");
    const [entry] = presence.list((key, { metas }) => ({ key, meta: metas[0] }));
    assert.equal(entry.key, "hook-pat");
    assert.equal(entry.meta.badge, "gold");
    assert.equal(entry.meta.name, "Pat");
  });

  test("the event webhook's reply and broadcasts reach the clients; its refusal is an error reply", T, async () => {
    const s1 = phxSocket(server, { params: { name: "v1", role: "vip" } });
    const s2 = phxSocket(server, { params: { name: "v2", role: "vip" } });
    const c1 = s1.channel("vip:room", {});
    const c2 = s2.channel("vip:room", {});
    await receive(c1.join());
    await receive(c2.join());
    const shout = nextEvent(c2, "shout");
    assert.deepEqual(await receive(c1.push("echo", { text: "hey" })), { echoed: "hey" });
    assert.deepEqual(await shout, { text: "hey", by: "hook-v1" });
    assert.equal((await receive(c1.push("fail", {}), "error")).reason, "nope");
  });

  test("slow, garbage, oversized, failing and unreachable webhooks give an error reply within the timeout", T, async () => {
    const s = phxSocket(server, { params: { name: "w" } });
    for (const [topic, reason] of [["slow:1", "backend timeout"], ["garbage:1", "backend unavailable"], ["down:1", "backend unavailable"], ["huge:1", "backend unavailable"]]) {
      const started = Date.now();
      const r = await receive(s.channel(topic, {}).join(), "error", 3000);
      assert.equal(r.reason, reason, topic);
      assert.ok(Date.now() - started < 1500, `${topic} answered in ${Date.now() - started} ms`);
    }
    const c = s.channel("err500:1", {});
    await receive(c.join());
    const before = app.calls.filter((x) => x.path === "/fail500").length;
    assert.equal((await receive(c.push("x", {}), "error")).reason, "backend unavailable");
    assert.equal(app.calls.filter((x) => x.path === "/fail500").length - before, 2, "one retry after a 500");
    // The socket is fine afterwards, and the failures are counted.
    await receive(s.channel("plain:1", {}).join());
    assert.ok((await metric(server, "phx_broker_webhook_failures_total")) >= 4);
    assert.ok((await metric(server, "phx_broker_webhook_latency_seconds_count")) >= 5);
  });
});

describe("a token offered while identity is off", () => {
  let server;
  before(async () => { server = await startServer(); });
  after(async () => { await closeAll(); await server.stop(); });
  afterEach(closeAll);

  test("does not stop phoenix.js from connecting (the phoenix subprotocol is answered)", T, async () => {
    const s = phxSocket(server, { authToken: "anything" });
    await receive(s.channel("room:x", {}).join());
    const r = await handshake(server, { headers: { "Sec-WebSocket-Protocol": "phoenix, base64url.bearer.phx.YWJj" } });
    assert.equal(r.status, 101);
    assert.equal(r.headers["sec-websocket-protocol"], "phoenix");
  });
});
