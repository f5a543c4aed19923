// The thin end-to-end slice: the official client joins, pushes and receives a relayed broadcast.
import { test, after, before } from "node:test";
import assert from "node:assert/strict";
import { startServer, phxSocket, receive } from "./harness.mjs";

let server;
before(async () => { server = await startServer(); });
after(async () => { await server.stop(); });

test("phoenix.js joins, pushes and receives the relayed broadcast (V2)", async () => {
  const socket = phxSocket(server);
  const ch = socket.channel("chat:1", {});
  const got = new Promise((r) => ch.on("new_msg", r));
  assert.deepEqual(await receive(ch.join()), {});
  assert.deepEqual(await receive(ch.push("new_msg", { body: "hi" })), {});
  assert.deepEqual(await got, { body: "hi" });
  socket.disconnect();
});

test("a second client receives broadcasts from the first", async () => {
  const a = phxSocket(server), b = phxSocket(server);
  const ca = a.channel("chat:2", {}), cb = b.channel("chat:2", {});
  await receive(ca.join());
  await receive(cb.join());
  const got = new Promise((r) => cb.on("ev", r));
  await receive(ca.push("ev", { n: 1 }));
  assert.deepEqual(await got, { n: 1 });
  a.disconnect(); b.disconnect();
});

test("the demo page and the phoenix.js it loads are served", async () => {
  const page = await fetch(`${server.http ?? server.url.replace("ws://", "http://").replace("/socket", "")}/`);
  assert.equal(page.status, 200);
  assert.match(page.headers.get("content-type"), /text\/html/);
  const html = await page.text();
  assert.match(html, /<script src="\/phoenix.min.js">/);
  assert.match(html, /new Phoenix\.Socket\("\/socket"/);
  const js = await fetch(`${server.http ?? server.url.replace("ws://", "http://").replace("/socket", "")}/phoenix.min.js`);
  assert.equal(js.status, 200);
  assert.match(await js.text(), /var Phoenix=/);
});
