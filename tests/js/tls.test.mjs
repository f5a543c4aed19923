// TLS: the broker serves wss:// and https:// from a certificate and key made here with openssl
// (a self-signed certificate for 127.0.0.1, trusted by these clients only). phoenix.js joins and
// pushes over wss, LongPoll and /healthz answer over https, and plain HTTP is not served.
import { test, describe, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { writeFileSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import https from "node:https";
import http from "node:http";
import { Socket } from "phoenix";
import WebSocket from "ws";
import { startServer, receive, closeAll, T } from "./harness.mjs";

const dir = mkdtempSync(join(tmpdir(), "broker-tls-"));
const cert = join(dir, "cert.pem");
const key = join(dir, "key.pem");

function get(url, opts = {}) {
  const lib = url.startsWith("https") ? https : http;
  return new Promise((resolve, reject) => {
    const req = lib.get(url, { ...opts, timeout: 3000 }, (res) => {
      let body = "";
      res.on("data", (d) => { body += d; });
      res.on("end", () => resolve({ status: res.statusCode, body }));
    });
    req.on("error", reject);
    req.on("timeout", () => req.destroy(new Error("timeout")));
  });
}

describe("TLS", () => {
  let server, ca, port;
  before(async () => {
    execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
      "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"], { stdio: "ignore" });
    ca = readFileSync(cert);
    const config = join(dir, "broker.toml");
    writeFileSync(config, `listen = "127.0.0.1:0"\n[tls]\ncert_file = "${cert}"\nkey_file = "${key}"\n`);
    server = await startServer(undefined, ["--config", config]);
    port = server.port;
  });
  after(async () => { await closeAll(); await server.stop(); });
  afterEach(closeAll);

  test("phoenix.js joins and pushes over wss://", T, async () => {
    class TrustingWebSocket extends WebSocket {
      constructor(url, protocols) { super(url, protocols, { ca }); }
    }
    const socket = new Socket(`wss://127.0.0.1:${port}/socket`, { transport: TrustingWebSocket, timeout: 2000 });
    socket.connect();
    try {
      const ch = socket.channel("room:tls", {});
      await receive(ch.join());
      await receive(ch.push("new_msg", { body: "over tls" }));
    } finally {
      socket.disconnect();
    }
  });

  test("https: /healthz and a LongPoll session; an untrusted client and plain HTTP get nothing", T, async () => {
    assert.deepEqual(await get(`https://127.0.0.1:${port}/healthz`, { ca }), { status: 200, body: "ok" });
    const lp = await get(`https://127.0.0.1:${port}/socket/longpoll?vsn=2.0.0`, { ca });
    assert.equal(JSON.parse(lp.body).status, 410);
    await assert.rejects(get(`https://127.0.0.1:${port}/healthz`), /self-signed|certificate/);
    await assert.rejects(get(`http://127.0.0.1:${port}/healthz`));
  });
});
