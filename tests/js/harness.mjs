// Test harness: start a broker (or the conformance server) on port 0, and clients for it.
//
// * `startServer` / `startConformance` spawn a server (the latter with a TOML config).
// * `phxSocket` is the official phoenix.js client; `connect` is a raw client speaking V1 or V2
//   frames (what phoenix.js can't express: stale join_refs, numeric refs, malformed frames,
//   binary frames, V1), reading frames in order with `next()` and asserting silence with
//   `expectNone()`.
// * `handshake` issues a raw HTTP upgrade request (status codes and headers of refusals);
//   `lpGet` / `lpPost` drive the LongPoll endpoint with fetch.
// * Every client is registered and closed by `closeAll()` (call it in `afterEach`), so a test
//   file never leaves a handle (and its process) behind.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import http from "node:http";
import crypto from "node:crypto";
import assert from "node:assert/strict";
import { Socket } from "phoenix";
import WebSocket from "ws";

export const BROKER_BIN = process.env.BROKER_BIN ?? new URL("../../target/debug/broker", import.meta.url).pathname;
export const CONFORMANCE_BIN =
  process.env.CONFORMANCE_BIN ?? new URL("../../target/debug/examples/conformance", import.meta.url).pathname;

/** Default per-test options: every test is bounded. */
export const T = { timeout: 10_000 };

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `pred` every 10 ms until it is truthy; throws after `timeoutMs`. */
export async function until(pred, timeoutMs = 3000, what = "condition") {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timeout waiting for ${what}`);
    await sleep(10);
  }
}

/** Everything opened by a test, closed by `closeAll`. */
const live = new Set();

/** Closes every client and phoenix.js socket opened since the last call. */
export async function closeAll() {
  const all = [...live];
  live.clear();
  await Promise.all(all.map((c) => Promise.resolve(c.closeForCleanup()).catch(() => {})));
}

/** Starts a server binary; resolves with { url, port, http, proc, stop }. */
export async function startServer(bin = BROKER_BIN, args = ["--listen", "127.0.0.1:0"], { stdin = false } = {}) {
  // No backtraces: the conformance channels panic on purpose, and resolving a backtrace in a
  // debug build costs ~100 ms per panic.
  const env = { ...process.env, RUST_BACKTRACE: "0" };
  const proc = spawn(bin, args, { stdio: [stdin ? "pipe" : "ignore", "pipe", "inherit"], env });
  proc.stdin?.on("error", () => {}); // EPIPE once the server is gone
  const lines = createInterface({ input: proc.stdout });
  const [line] = await Promise.race([
    once(lines, "line"),
    once(proc, "exit").then(([code]) => { throw new Error(`${bin} exited with ${code} before listening`); }),
  ]);
  const m = /listening on (.+):(\d+)/.exec(line);
  if (!m) throw new Error(`unexpected first line: ${line}`);
  const port = Number(m[2]);
  const exited = once(proc, "exit");
  const stop = async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    proc.stdin?.end();
    proc.kill("SIGTERM");
    const killer = setTimeout(() => proc.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(killer);
  };
  return { port, url: `ws://127.0.0.1:${port}/socket`, http: `http://127.0.0.1:${port}`, proc, stop, exited };
}

/**
 * Starts the conformance server with a TOML config (`listen` is set to port 0 here; `toml`
 * may hold further top-level keys first, then tables such as `[limits]`).
 */
export async function startConformance(toml = "") {
  const dir = mkdtempSync(join(tmpdir(), "phx-conformance-"));
  const path = join(dir, "config.toml");
  writeFileSync(path, `listen = "127.0.0.1:0"\n${toml}\n`);
  let s;
  try {
    s = await startServer(CONFORMANCE_BIN, [path], { stdin: true });
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  const stop = s.stop;
  s.stop = async () => {
    await stop();
    rmSync(dir, { recursive: true, force: true });
  };
  /** `Endpoint.broadcast(topic, event, payload)` from outside any channel (the server's stdin). */
  s.broadcast = (topic, event, payload = {}) => s.proc.stdin.write(JSON.stringify({ topic, event, payload }) + "\n");
  return s;
}

/** Runs `fn(server)` against a conformance server started with `toml`, then stops it. */
export async function withConformance(toml, fn) {
  const server = await startConformance(toml);
  try {
    return await fn(server);
  } finally {
    await closeAll();
    await server.stop();
  }
}

/** A phoenix.js Socket over the `ws` package. */
export function phxSocket(server, opts = {}) {
  // A short push timeout: a push that never gets a reply keeps its timer (and this process)
  // alive for `timeout` ms after the test.
  const s = new Socket(server.url, { transport: WebSocket, reconnectAfterMs: () => 50, rejoinAfterMs: () => 50, timeout: 1500, ...opts });
  s.connect();
  live.add({ closeForCleanup: () => s.disconnect() });
  return s;
}

/** Resolves with the reply payload of a push for the given status, rejects on others. */
export function receive(push, status = "ok", timeoutMs = 3000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("timeout waiting for " + status)), timeoutMs);
    for (const s of new Set(["ok", "error", "timeout", status])) {
      push.receive(s, (resp) => {
        clearTimeout(t);
        if (s === status) resolve(resp);
        else reject(new Error(`got ${s}: ${JSON.stringify(resp)}`));
      });
    }
  });
}

/** Resolves with the first event `event` on a phoenix.js channel (or rejects on timeout). */
export function nextEvent(channel, event, timeoutMs = 3000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => { channel.off(event, ref); reject(new Error("timeout waiting for " + event)); }, timeoutMs);
    const ref = channel.on(event, (payload) => { clearTimeout(t); channel.off(event, ref); resolve(payload); });
  });
}

// ---------------------------------------------------------------------------------------------
// Serializers: how a raw client writes messages and what it expects back.

/** V2 JSON: `[join_ref, ref, topic, event, payload]` both ways. */
export const V2 = {
  name: "V2",
  query: "vsn=2.0.0",
  msg: (jr, ref, topic, event, payload) => [jr, ref, topic, event, payload],
  frame: (jr, ref, topic, event, payload) => [jr, ref, topic, event, payload],
};

/** V1 JSON: objects; `join_ref` optional inbound (omitted when null), never outbound. */
export const V1 = {
  name: "V1",
  query: "vsn=1.0.0",
  msg: (jr, ref, topic, event, payload) => (jr == null ? { topic, event, payload, ref } : { topic, event, payload, ref, join_ref: jr }),
  frame: (_jr, ref, topic, event, payload) => ({ topic, event, payload, ref }),
};

export const SERIALIZERS = [V2, V1];

// ---------------------------------------------------------------------------------------------
// Raw WebSocket clients.

/** A raw WebSocket client that records every frame, for what phoenix.js can't express. */
export async function rawClient(server, query = "vsn=2.0.0", wsOpts = {}) {
  const { protocols, ...opts } = wsOpts;
  const ws = new WebSocket(`${server.url}/websocket?${query}`, protocols, opts);
  const frames = [];
  const waiters = [];
  const errors = [];
  ws.on("error", (e) => errors.push(e));
  ws.on("message", (data, isBinary) => {
    let f;
    if (isBinary) {
      f = { binary: true, data: new Uint8Array(data) };
    } else {
      const text = data.toString();
      f = JSON.parse(text);
      if (f !== null && typeof f === "object") Object.defineProperty(f, "raw", { value: text, enumerable: false });
    }
    frames.push(f);
    waiters.splice(0).forEach((w) => w());
  });
  const wake = () => waiters.splice(0).forEach((w) => w());
  ws.on("close", (code, reason) => {
    client.closeCode = code;
    client.closeReason = reason.toString();
    wake();
  });
  const client = {
    ws,
    frames,
    errors,
    /** Index of the next frame `next()` returns. */
    cursor: 0,
    closeCode: undefined,
    send: (msg) => ws.send(typeof msg === "string" || msg instanceof Uint8Array ? msg : JSON.stringify(msg)),
    /** Waits until `pred` matches a recorded frame (from the start); returns it. */
    async waitFor(pred, timeoutMs = 3000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const f = frames.find(pred);
        if (f) return f;
        if (Date.now() > deadline) throw new Error("timeout; frames: " + show(frames));
        await new Promise((r) => { waiters.push(r); setTimeout(r, 50); });
      }
    },
    /** The next frame in arrival order. */
    async next(timeoutMs = 3000) {
      const deadline = Date.now() + timeoutMs;
      while (client.cursor >= frames.length) {
        if (Date.now() > deadline) throw new Error(`timeout waiting for frame #${client.cursor}; frames: ${show(frames)}; close ${client.closeCode}`);
        await new Promise((r) => { waiters.push(r); setTimeout(r, 50); });
      }
      return frames[client.cursor++];
    },
    /** Asserts no unread frame arrives within `ms`. */
    async expectNone(ms = 200) {
      await sleep(ms);
      assert.deepEqual(frames.slice(client.cursor).map(show1), [], "unexpected frames");
    },
    /** Marks every frame received so far as read. */
    skip() { client.cursor = frames.length; },
    /** Resolves with the close code once the connection is closed. */
    async closed(timeoutMs = 3000) {
      if (ws.readyState === WebSocket.CLOSED) return client.closeCode;
      let timer;
      try {
        const [code] = await Promise.race([
          once(ws, "close"),
          new Promise((_, rej) => { timer = setTimeout(() => rej(new Error("not closed")), timeoutMs); }),
        ]);
        return code;
      } finally {
        clearTimeout(timer);
      }
    },
    isOpen: () => ws.readyState === WebSocket.OPEN,
    close: (code) => ws.close(code),
    closeForCleanup: async () => {
      if (ws.readyState === WebSocket.CLOSED) return;
      ws.close();
      const t = setTimeout(() => ws.terminate(), 500);
      await once(ws, "close");
      clearTimeout(t);
    },
  };
  live.add(client);
  let openTimer;
  try {
    await Promise.race([
      once(ws, "open"),
      new Promise((_, rej) => { openTimer = setTimeout(() => rej(new Error("open timeout")), 3000); }),
    ]);
  } finally {
    clearTimeout(openTimer);
  }
  return client;
}

/**
 * A raw client for serializer `codec` (V1 or V2) with message helpers:
 * `push(jr, ref, topic, event, payload)`, `expect(jr, ref, topic, event, payload)` (the next
 * frame must be exactly that, in that serializer's shape), `expectReply(jr, ref, topic,
 * status, response)`, `join(topic, jr, params)` (joins and checks the ok reply).
 */
export async function connect(server, codec = V2, opts = {}) {
  const c = await rawClient(server, opts.query ?? codec.query, opts.wsOpts ?? {});
  c.codec = codec;
  c.push = (jr, ref, topic, event, payload = {}) => c.send(codec.msg(jr, ref, topic, event, payload));
  c.frame = (jr, ref, topic, event, payload) => codec.frame(jr, ref, topic, event, payload);
  c.reply = (jr, ref, topic, status, response = {}) => codec.frame(jr, ref, topic, "phx_reply", { status, response });
  c.expect = async (jr, ref, topic, event, payload, msg) => {
    assert.deepEqual(await c.next(), codec.frame(jr, ref, topic, event, payload), msg);
  };
  c.expectReply = async (jr, ref, topic, status, response = {}, msg) => {
    assert.deepEqual(await c.next(), c.reply(jr, ref, topic, status, response), msg);
  };
  c.join = async (topic, jr = "1", params = {}) => {
    c.push(jr, jr, topic, "phx_join", params);
    await c.expectReply(jr, jr, topic, "ok", {}, `join ${topic}`);
  };
  return c;
}

/** Joins the `observer` topic: termination reasons of TestChannels arrive there. */
export async function observer(server) {
  const c = await connect(server, V2);
  await c.join("observer", "o");
  /** Resolves with the `terminate` reason reported for `topic` (e.g. "shutdown:left"). */
  c.terminated = async (topic, timeoutMs = 3000) =>
    (await c.waitFor((f) => Array.isArray(f) && f[3] === "terminated" && f[4].topic === topic, timeoutMs))[4].reason;
  c.terminations = (topic) => c.frames.filter((f) => Array.isArray(f) && f[3] === "terminated" && f[4].topic === topic).map((f) => f[4].reason);
  return c;
}

function show1(f) {
  return f && f.binary ? { binary: [...f.data] } : f;
}
function show(frames) {
  return JSON.stringify(frames.map(show1));
}

// ---------------------------------------------------------------------------------------------
// Binary frames (spec §3.4).

const enc = new TextEncoder();
function bin(kind, fields, payload) {
  const parts = fields.map((s) => enc.encode(s ?? ""));
  for (const p of parts) if (p.length > 255) throw new Error("header field > 255 bytes");
  const out = new Uint8Array(1 + parts.length + parts.reduce((n, p) => n + p.length, 0) + payload.length);
  out[0] = kind;
  parts.forEach((p, i) => { out[1 + i] = p.length; });
  let at = 1 + parts.length;
  for (const p of parts) { out.set(p, at); at += p.length; }
  out.set(payload, at);
  return out;
}
/** Kind 0, client → server: `00|jr_len|ref_len|topic_len|event_len|jr|ref|topic|event|payload`. */
export const binPush = (jr, ref, topic, event, payload) => bin(0, [jr, ref, topic, event], Uint8Array.from(payload));
/** The frame `rawClient` records for a kind-0 server push (4-byte header, no ref). */
export const binServerPush = (jr, topic, event, payload) => ({ binary: true, data: bin(0, [jr, topic, event], Uint8Array.from(payload)) });
/** The frame `rawClient` records for a kind-1 reply. */
export const binReply = (jr, ref, topic, status, payload) => ({ binary: true, data: bin(1, [jr, ref, topic, status], Uint8Array.from(payload)) });
/** The frame `rawClient` records for a kind-2 broadcast. */
export const binBroadcast = (topic, event, payload) => ({ binary: true, data: bin(2, [topic, event], Uint8Array.from(payload)) });

// ---------------------------------------------------------------------------------------------
// HTTP.

/**
 * Sends a WebSocket upgrade request (or any request with `upgrade: false`) and resolves with
 * `{ status, headers, body }`; a 101 is closed at once (body "").
 */
export function handshake(server, { path = "/socket/websocket", query = "vsn=2.0.0", method = "GET", headers = {}, upgrade = true } = {}) {
  return new Promise((resolve, reject) => {
    const key = crypto.randomBytes(16).toString("base64");
    const h = upgrade
      ? { Connection: "Upgrade", Upgrade: "websocket", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": key, ...headers }
      : headers;
    const req = http.request({ host: "127.0.0.1", port: server.port, path: `${path}?${query}`, method, headers: h, agent: false });
    const t = setTimeout(() => { req.destroy(); reject(new Error("handshake timeout")); }, 3000);
    req.on("upgrade", (res, socket) => {
      clearTimeout(t);
      socket.destroy();
      resolve({ status: res.statusCode, headers: res.headers, body: "", key });
    });
    req.on("response", (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d) => { body += d; });
      res.on("end", () => { clearTimeout(t); resolve({ status: res.statusCode, headers: res.headers, body, key }); });
    });
    req.on("error", (e) => { clearTimeout(t); reject(e); });
    req.end();
  });
}

/** `Sec-WebSocket-Accept` for a key (RFC 6455). */
export function acceptKey(key) {
  return crypto.createHash("sha1").update(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest("base64");
}

async function lpFetch(server, method, query, { headers = {}, body } = {}) {
  const started = Date.now();
  const res = await fetch(`${server.http}/socket/longpoll?${query}`, { method, headers, body, signal: AbortSignal.timeout(8000) });
  const text = await res.text();
  let json;
  try { json = text === "" ? undefined : JSON.parse(text); } catch { json = undefined; }
  return { http: res.status, headers: res.headers, text, json, ms: Date.now() - started };
}

/** LongPoll GET (poll or new session). */
export const lpGet = (server, query = "vsn=2.0.0", headers = {}) => lpFetch(server, "GET", query, { headers });

/** LongPoll POST of NDJSON lines (arrays are JSON-encoded, Uint8Arrays base64-encoded). */
export function lpPost(server, query, lines, contentType = "application/x-ndjson", headers = {}) {
  const body = Array.isArray(lines)
    ? lines.map((l) => (typeof l === "string" ? l : l instanceof Uint8Array ? Buffer.from(l).toString("base64") : JSON.stringify(l))).join("\n")
    : lines;
  const h = contentType ? { "content-type": contentType, ...headers } : headers;
  return lpFetch(server, "POST", query, { headers: h, body });
}

/** `OPTIONS` on the LongPoll endpoint. */
export const lpOptions = (server, headers = {}) => lpFetch(server, "OPTIONS", "", { headers });

/** Opens a LongPoll session; resolves with its token. */
export async function lpSession(server, query = "vsn=2.0.0", headers = {}) {
  const r = await lpGet(server, query, headers);
  assert.equal(r.json?.status, 410, `new session: ${r.text}`);
  assert.equal(typeof r.json.token, "string");
  return r.json.token;
}

/**
 * Polls session `token` until `count` messages were collected (or `timeoutMs` passes); returns
 * the messages parsed (each LongPoll message is a string holding one serialized frame).
 */
export async function lpCollect(server, token, count, timeoutMs = 3000, query = "vsn=2.0.0") {
  const out = [];
  const deadline = Date.now() + timeoutMs;
  while (out.length < count && Date.now() < deadline) {
    const r = await lpGet(server, `${query}&token=${encodeURIComponent(token)}`);
    assert.equal(r.http, 200);
    assert.ok([200, 204].includes(r.json.status), `poll status: ${r.text}`);
    for (const m of r.json.messages) {
      assert.equal(typeof m, "string", "LongPoll messages are strings");
      out.push(JSON.parse(m));
    }
  }
  return out;
}

/** Reads a counter from `/metrics`. */
export async function metric(server, name) {
  const text = await (await fetch(`${server.http}/metrics`)).text();
  const m = new RegExp(`^${name} (\\d+)$`, "m").exec(text);
  if (!m) throw new Error(`metric ${name} not found`);
  return Number(m[1]);
}

/** A broker config file in a fresh temp folder (`listen` on port 0 first, then `toml`). */
export function configFile(toml) {
  const dir = mkdtempSync(join(tmpdir(), "broker-"));
  const path = join(dir, "broker.toml");
  writeFileSync(path, `listen = "127.0.0.1:0"\n${toml}\n`);
  return path;
}

/** The `secret_key_base` the identity tests configure. */
export const TEST_SECRET_KEY_BASE = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/** An ETF term for a string, a small or 32-bit integer, or a map with binary keys. */
function etf(v) {
  if (typeof v === "string") {
    const b = Buffer.from(v, "utf8");
    const h = Buffer.alloc(5);
    h[0] = 109;
    h.writeUInt32BE(b.length, 1);
    return Buffer.concat([h, b]);
  }
  if (Number.isInteger(v) && v >= 0 && v < 256) return Buffer.from([97, v]);
  if (Number.isInteger(v)) {
    const b = Buffer.alloc(5);
    b[0] = 98;
    b.writeInt32BE(v, 1);
    return b;
  }
  if (Array.isArray(v)) {
    if (v.length === 0) return Buffer.from([106]);
    const h = Buffer.alloc(5);
    h[0] = 108;
    h.writeUInt32BE(v.length, 1);
    return Buffer.concat([h, ...v.map(etf), Buffer.from([106])]);
  }
  const entries = Object.entries(v);
  const h = Buffer.alloc(5);
  h[0] = 116;
  h.writeUInt32BE(entries.length, 1);
  return Buffer.concat([h, ...entries.flatMap(([k, x]) => [etf(k), etf(x)])]);
}

/** `Phoenix.Token.sign(secret, salt, data, signed_at: …, max_age: …)` (spec §9.1-9.4). */
export function phoenixToken(data, { secret = TEST_SECRET_KEY_BASE, salt = "user socket", signedAtMs = Date.now(), maxAge = 86400 } = {}) {
  const key = crypto.pbkdf2Sync(secret, salt, 1000, 32, "sha256");
  let ms = BigInt(signedAtMs);
  const le = [];
  while (ms > 0n) { le.push(Number(ms & 0xffn)); ms >>= 8n; }
  const payload = Buffer.concat([Buffer.from([131, 104, 3]), etf(data), Buffer.from([110, le.length, 0, ...le]), etf(maxAge)]);
  const signed = `SFMyNTY.${payload.toString("base64url")}`;
  return `${signed}.${crypto.createHmac("sha256", key).update(signed).digest("base64url")}`;
}

