// Checklist §11 items 69-87 (LongPoll) and §12.8 item 111, with raw fetch calls at the envelope
// level, plus phoenix.js's own LongPoll transport end to end. The server runs with a 300 ms
// poll window so that window-related items take a fraction of a second.
import { test, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { Socket, LongPoll } from "phoenix";
import {
  T, V2, startConformance, withConformance, closeAll, connect, observer, receive, nextEvent, sleep,
  lpGet, lpPost, lpOptions, lpSession, lpCollect, binPush,
} from "./harness.mjs";

const WINDOW = 300;
let server;
before(async () => { server = await startConformance(`[limits]\nlongpoll_window_ms = ${WINDOW}`); });
after(async () => { await closeAll(); await server.stop(); });
afterEach(closeAll);

const q = (token, vsn = "2.0.0") => `vsn=${vsn}&token=${encodeURIComponent(token)}`;
const reply = (jr, ref, topic, status, response = {}) => [jr, ref, topic, "phx_reply", { status, response }];

function assertLongPollHeaders(r, what) {
  assert.equal(r.http, 200, `${what}: HTTP status`);
  assert.equal(r.headers.get("access-control-allow-origin"), "*", `${what}: access-control-allow-origin`);
  assert.equal(r.headers.get("cache-control"), "no-store", `${what}: cache-control`);
  assert.match(r.headers.get("content-type") ?? "", /^application\/json/, `${what}: content-type`);
}

test('11.69 GET /socket/longpoll?vsn=2.0.0 (no token), connect ok → 200 {"status":410,"token":T,"messages":[]}', T, async () => {
  for (const query of ["vsn=2.0.0", "vsn=2.0.0&"]) { // phoenix.js's first GET ends with "&"
    const r = await lpGet(server, query);
    assertLongPollHeaders(r, "new session");
    assert.deepEqual(Object.keys(r.json).sort(), ["messages", "status", "token"]);
    assert.equal(r.json.status, 410);
    assert.deepEqual(r.json.messages, []);
    assert.match(r.json.token, /^[A-Za-z0-9_\-.~]{16,}$/, "an opaque URL-safe token");
  }
});

test('11.70 new session with connect error → 200 {"status":403}', T, async () => {
  const r = await lpGet(server, "reject=1&vsn=2.0.0");
  assertLongPollHeaders(r, "refused");
  assert.deepEqual(r.json, { status: 403 });
  assert.deepEqual((await lpGet(server, "reject=429&vsn=2.0.0")).json, { status: 403 });
  assert.deepEqual((await lpGet(server, "vsn=3.0.0")).json, { status: 403 }, "unsupported vsn");
});

test('11.71 new session with a rejected Origin → 200 {"status":403}', T, async () => {
  await withConformance('check_origin = ["https://example.com"]', async (s) => {
    const r = await lpGet(s, "vsn=2.0.0", { Origin: "https://evil.com" });
    assertLongPollHeaders(r, "origin refused");
    assert.deepEqual(r.json, { status: 403 });
    assert.equal((await lpGet(s, "vsn=2.0.0", { Origin: "https://example.com" })).json.status, 410);
  });
});

test("6.8 the origin check applies to POST too", T, async () => {
  await withConformance('check_origin = ["https://example.com"]', async (s) => {
    const token = await lpSession(s, "vsn=2.0.0", { Origin: "https://example.com" });
    const r = await lpPost(s, q(token), [["1", "1", "room:68o", "phx_join", {}]], "application/x-ndjson", { Origin: "https://evil.com" });
    assertLongPollHeaders(r, "POST with a rejected origin");
    assert.deepEqual(r.json, { status: 403 });
  });
});

test("11.72 GET with buffered frames → 200 at once, all frames in FIFO order, buffer emptied", T, async () => {
  const token = await lpSession(server);
  const p = await lpPost(server, q(token), [
    ["1", "1", "room:72", "phx_join", {}],
    ["1", "2", "room:72", "echo", { n: 1 }],
    ["1", "3", "room:72", "echo", { n: 2 }],
  ]);
  assert.deepEqual(p.json, { status: 200 });
  await sleep(50);
  const r = await lpGet(server, q(token));
  assertLongPollHeaders(r, "poll");
  assert.ok(r.ms < WINDOW / 2, `answered after ${r.ms} ms`);
  assert.equal(r.json.status, 200);
  assert.equal(r.json.token, token);
  assert.ok(r.json.messages.every((m) => typeof m === "string"), "messages are strings");
  assert.deepEqual(r.json.messages.map((m) => JSON.parse(m)), [
    reply("1", "1", "room:72", "ok"),
    reply("1", "2", "room:72", "ok", { echo: { n: 1 } }),
    reply("1", "3", "room:72", "ok", { echo: { n: 2 } }),
  ]);
  const again = await lpGet(server, q(token));
  assert.deepEqual(again.json, { status: 204, token, messages: [] }, "the buffer was emptied");
});

test("11.73 GET with nothing buffered is held: a frame within window_ms completes it with 200, else 204", T, async () => {
  const token = await lpSession(server);
  await lpPost(server, q(token), [["1", "1", "room:73", "phx_join", {}]]);
  await lpCollect(server, token, 1);
  const held = lpGet(server, q(token));
  await sleep(100);
  await lpPost(server, q(token), [["1", "2", "room:73", "echo", {}]]);
  const r = await held;
  assert.equal(r.json.status, 200);
  assert.ok(r.ms >= 80 && r.ms < WINDOW - 20, `completed after ${r.ms} ms`);
  assert.deepEqual(r.json.messages.map((m) => JSON.parse(m)), [reply("1", "2", "room:73", "ok", { echo: {} })]);
  const empty = await lpGet(server, q(token));
  assertLongPollHeaders(empty, "204");
  assert.deepEqual(empty.json, { status: 204, token, messages: [] });
  assert.ok(empty.ms >= WINDOW - 30 && empty.ms < WINDOW + 400, `204 after ${empty.ms} ms`);
});

test("11.74 GET with an invalid token → new session {\"status\":410,\"token\":T2,\"messages\":[]}", T, async () => {
  const r = await lpGet(server, q("not-a-token"));
  assertLongPollHeaders(r, "bad token");
  assert.equal(r.json.status, 410);
  assert.deepEqual(r.json.messages, []);
  assert.notEqual(r.json.token, "not-a-token");
  // The new token is a live session.
  assert.equal((await lpGet(server, q(r.json.token))).json.status, 204);
});

test("11.75 X-Phoenix-Longpoll-Token header resumes the session; the header wins over a stale param", T, async () => {
  const token = await lpSession(server);
  const byHeader = await lpGet(server, "vsn=2.0.0", { "x-phoenix-longpoll-token": token });
  assert.deepEqual(byHeader.json, { status: 204, token, messages: [] });
  const stale = await lpSession(server);
  const both = await lpGet(server, q("bogus"), { "x-phoenix-longpoll-token": token });
  assert.deepEqual(both.json, { status: 204, token, messages: [] });
  const both2 = await lpGet(server, q(stale), { "x-phoenix-longpoll-token": token });
  assert.equal(both2.json.token, token);
  // POST too.
  const p = await lpPost(server, "vsn=2.0.0", [["1", "1", "room:75", "phx_join", {}]], "application/x-ndjson", { "x-phoenix-longpoll-token": token });
  assert.deepEqual(p.json, { status: 200 });
  assert.deepEqual(await lpCollect(server, token, 1), [reply("1", "1", "room:75", "ok")]);
});

test('11.76 POST phx_join (ndjson) → {"status":200} after the join completed; the reply is in the next GET', T, async () => {
  const token = await lpSession(server);
  const p = await lpPost(server, q(token), [["1", "1", "room:76", "phx_join", { slow_ms: 150 }]]);
  assertLongPollHeaders(p, "POST");
  assert.deepEqual(p.json, { status: 200 });
  assert.ok(p.ms >= 140, `POST answered after ${p.ms} ms, before the 150 ms join completed`);
  const r = await lpGet(server, q(token));
  assert.ok(r.ms < 100, `join reply not buffered yet (GET took ${r.ms} ms)`);
  assert.deepEqual(r.json.messages.map((m) => JSON.parse(m)), [reply("1", "1", "room:76", "ok")]);
});

test("11.77 POST with two lines → both dispatched in order; one {\"status\":200}", T, async () => {
  const token = await lpSession(server);
  const p = await lpPost(server, q(token), '["1","1","room:77","phx_join",{}]\r\n["1","2","room:77","echo",{"second":true}]');
  assert.deepEqual(p.json, { status: 200 });
  assert.deepEqual(await lpCollect(server, token, 2), [
    reply("1", "1", "room:77", "ok"),
    reply("1", "2", "room:77", "ok", { echo: { second: true } }),
  ]);
});

test("11.78 a POST line that is base64 of a kind-0 binary frame → dispatched as a binary message", T, async () => {
  const token = await lpSession(server);
  const p = await lpPost(server, q(token), [["1", "1", "room:78", "phx_join", {}], binPush("1", "2", "room:78", "describe", [1, 2, 3])]);
  assert.deepEqual(p.json, { status: 200 });
  assert.deepEqual(await lpCollect(server, token, 2), [
    reply("1", "1", "room:78", "ok"),
    reply("1", "2", "room:78", "ok", { binary: true, bytes: [1, 2, 3] }),
  ]);
});

test("11.79 POST with 101 lines → only the first 100 are dispatched", T, async () => {
  const token = await lpSession(server);
  const lines = [["1", "1", "room:79", "phx_join", {}]];
  for (let i = 2; i <= 101; i++) lines.push(["1", String(i), "room:79", "echo", {}]);
  const p = await lpPost(server, q(token), lines);
  assert.deepEqual(p.json, { status: 200 });
  const got = await lpCollect(server, token, 100);
  assert.deepEqual(got.map((f) => f[1]), Array.from({ length: 100 }, (_, i) => String(i + 1)));
  const rest = await lpGet(server, q(token));
  assert.deepEqual(rest.json, { status: 204, token, messages: [] }, "line 101 was dispatched");
});

test('11.80 a POST line not handled within window_ms → {"status":408}; later lines not dispatched', T, async () => {
  const obs = await observer(server);
  const token = await lpSession(server);
  // A join slower than the window (joins are handled synchronously by the session, as in Phoenix).
  const p = await lpPost(server, q(token), [
    ["1", "1", "room:80", "phx_join", { slow_ms: WINDOW * 2 }],
    ["1", "2", "room:80", "stop_normal", {}],
  ]);
  assert.deepEqual(p.json, { status: 408 });
  assert.ok(p.ms >= WINDOW - 20 && p.ms < WINDOW * 2, `408 after ${p.ms} ms`);
  const got = await lpCollect(server, token, 2, WINDOW * 3);
  assert.deepEqual(got, [reply("1", "1", "room:80", "ok")], "the second line was dispatched");
  assert.deepEqual(obs.terminations("room:80"), []);
});

test('11.81 POST with an unknown (or no) token → {"status":410}', T, async () => {
  const r = await lpPost(server, q("unknown"), [["1", "1", "room:81", "phx_join", {}]]);
  assertLongPollHeaders(r, "POST 410");
  assert.deepEqual(r.json, { status: 410 });
  assert.deepEqual((await lpPost(server, "vsn=2.0.0", [["1", "1", "room:81", "phx_join", {}]])).json, { status: 410 });
});

test("11.82 POST with Content-Type application/json and a V1 object body → processed as one message", T, async () => {
  const token = await lpSession(server, "vsn=1.0.0");
  const body = JSON.stringify({ topic: "room:82", event: "phx_join", payload: {}, ref: "1" });
  assert.deepEqual((await lpPost(server, q(token, "1.0.0"), body, "application/json")).json, { status: 200 });
  // (The join had no join_ref, so the channel's join_ref is null: spec §12.4.)
  const body2 = JSON.stringify({ topic: "room:82", event: "echo", payload: { v: 1 }, ref: "2" });
  assert.deepEqual((await lpPost(server, q(token, "1.0.0"), new TextEncoder().encode(body2), null)).json, { status: 200 }, "no content type");
  const got = await lpCollect(server, token, 2, 2000, "vsn=1.0.0");
  assert.deepEqual(got, [
    { topic: "room:82", event: "phx_reply", payload: { status: "ok", response: {} }, ref: "1" },
    { topic: "room:82", event: "phx_reply", payload: { status: "ok", response: { echo: { v: 1 } } }, ref: "2" },
  ]);
});

test("11.83 OPTIONS /socket/longpoll → 200 empty with the CORS preflight headers", T, async () => {
  const r = await lpOptions(server, { "access-control-request-headers": "x-phoenix-authtoken, content-type", "access-control-request-method": "POST", origin: "https://a.example" });
  assert.equal(r.http, 200);
  assert.equal(r.text, "");
  assert.equal(r.headers.get("access-control-allow-origin"), "*");
  assert.equal(r.headers.get("access-control-allow-methods"), "get, post, options");
  assert.equal(r.headers.get("access-control-allow-headers"), "x-phoenix-authtoken, content-type");
  assert.equal(r.headers.get("access-control-max-age"), "3600");
});

test("11.84 every LongPoll response: HTTP 200, access-control-allow-origin *, cache-control no-store, JSON", T, async () => {
  const token = await lpSession(server);
  assertLongPollHeaders(await lpGet(server, "vsn=2.0.0"), "410 new session");
  assertLongPollHeaders(await lpGet(server, "reject=1&vsn=2.0.0"), "403");
  assertLongPollHeaders(await lpPost(server, q(token), [["1", "1", "room:84", "phx_join", {}]]), "POST 200");
  assertLongPollHeaders(await lpGet(server, q(token)), "GET 200");
  assertLongPollHeaders(await lpGet(server, q(token)), "GET 204");
  assertLongPollHeaders(await lpPost(server, q("nope"), [["1", "1", "room:84", "phx_join", {}]]), "POST 410");
});

test("11.85 no GET for > 1.5 × window_ms → the session stops, its channels terminate; next GET → 410 new token", T, async () => {
  const obs = await observer(server);
  const token = await lpSession(server);
  await lpPost(server, q(token), [["1", "1", "room:85", "phx_join", {}]]);
  await lpCollect(server, token, 1);
  // Inactivity is checked every 1.5 × window (450 ms): the session is gone 450-900 ms after the last GET.
  assert.equal(await obs.terminated("room:85", 2000), "shutdown:inactive");
  const r = await lpGet(server, q(token));
  assert.equal(r.json.status, 410);
  assert.notEqual(r.json.token, token);
  // A session that keeps polling stays alive meanwhile.
  const live = await lpSession(server);
  const until = Date.now() + WINDOW * 3;
  while (Date.now() < until) assert.equal((await lpGet(server, q(live))).json.status, 204);
});

test('11.86 "disconnect" to the session\'s socket id → the session stops; next GET → 410 new token', T, async () => {
  const obs = await observer(server);
  const token = await lpSession(server, "user_id=86&vsn=2.0.0");
  await lpPost(server, q(token), [["1", "1", "room:86", "phx_join", {}]]);
  await lpCollect(server, token, 1);
  server.broadcast("user_socket:86", "disconnect", {});
  assert.equal(await obs.terminated("room:86"), "shutdown:disconnected");
  const r = await lpGet(server, q(token));
  assert.equal(r.json.status, 410);
  assert.notEqual(r.json.token, token);
});

test("11.87 first GET with X-Phoenix-AuthToken (auth_token enabled) → connect_info.auth_token", T, async () => {
  await withConformance(`auth_token = true\n[limits]\nlongpoll_window_ms = ${WINDOW}`, async (s) => {
    const token = await lpSession(s, "vsn=2.0.0", { "x-phoenix-authtoken": "abc" });
    await lpPost(s, q(token), [["1", "1", "room:87", "phx_join", {}]]);
    assert.deepEqual(await lpCollect(s, token, 1), [reply("1", "1", "room:87", "ok", { auth_token: "abc" })]);
  });
});

test("12.111 a binary reply queued for a LongPoll session never breaks it: next GET is 200 with every other frame", T, async () => {
  const token = await lpSession(server);
  const p = await lpPost(server, q(token), [
    ["1", "1", "room:111", "phx_join", {}],
    binPush("1", "2", "room:111", "echo", [1, 2]), // its reply is binary
    ["1", "3", "room:111", "echo", { after: true }],
    ["1", "4", "room:111", "push_binary", {}], // a binary push, then an ok reply
  ]);
  assert.deepEqual(p.json, { status: 200 });
  await sleep(50);
  const r = await lpGet(server, q(token));
  assertLongPollHeaders(r, "GET after a binary reply");
  assert.equal(r.json.status, 200);
  const texts = r.json.messages.map((m) => JSON.parse(m));
  assert.deepEqual(texts.filter((f) => f[1] !== "2"), [
    reply("1", "1", "room:111", "ok"),
    reply("1", "3", "room:111", "ok", { echo: { after: true } }),
    reply("1", "4", "room:111", "ok"),
  ]);
  // The session keeps working.
  await lpPost(server, q(token), [["1", "5", "room:111", "echo", {}]]);
  assert.deepEqual(await lpCollect(server, token, 1), [reply("1", "5", "room:111", "ok", { echo: {} })]);
});

test("6.7 phoenix.js over LongPoll: join, push, receive a broadcast from a WebSocket client, leave", T, async () => {
  const socket = new Socket(server.url, { transport: LongPoll, reconnectAfterMs: () => 50, rejoinAfterMs: () => 50, timeout: 1500 });
  socket.connect();
  try {
    const ch = socket.channel("room:lp", {});
    assert.deepEqual(await receive(ch.join()), {});
    assert.deepEqual(await receive(ch.push("echo", { via: "longpoll" })), { echo: { via: "longpoll" } });
    assert.deepEqual(await receive(ch.push("describe", new Uint8Array([5, 6]).buffer)), { binary: true, bytes: [5, 6] });
    const got = nextEvent(ch, "broadcasted");
    const ws = await connect(server, V2);
    await ws.join("room:lp");
    ws.push("1", "2", "room:lp", "broadcast", { from: "ws" });
    assert.deepEqual(await got, { from: "ws" });
    await receive(ch.leave());
  } finally {
    socket.disconnect();
  }
});
