// Test harness: start a broker (or the conformance server) on port 0, and clients for it.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { Socket } from "phoenix";
import WebSocket from "ws";

export const BROKER_BIN = process.env.BROKER_BIN ?? new URL("../../target/debug/broker", import.meta.url).pathname;
export const CONFORMANCE_BIN =
  process.env.CONFORMANCE_BIN ?? new URL("../../target/debug/examples/conformance", import.meta.url).pathname;

/** Starts a server binary; resolves with { url, port, proc, stop }. */
export async function startServer(bin = BROKER_BIN, args = ["--listen", "127.0.0.1:0"]) {
  const proc = spawn(bin, args, { stdio: ["ignore", "pipe", "inherit"] });
  const lines = createInterface({ input: proc.stdout });
  const [line] = await Promise.race([
    once(lines, "line"),
    once(proc, "exit").then(([code]) => { throw new Error(`${bin} exited with ${code} before listening`); }),
  ]);
  const m = /listening on (.+):(\d+)/.exec(line);
  if (!m) throw new Error(`unexpected first line: ${line}`);
  const port = Number(m[2]);
  const stop = async () => {
    if (proc.exitCode !== null) return;
    proc.kill("SIGTERM");
    await once(proc, "exit");
  };
  return { port, url: `ws://127.0.0.1:${port}/socket`, http: `http://127.0.0.1:${port}`, proc, stop };
}

/** A phoenix.js Socket over the `ws` package. */
export function phxSocket(server, opts = {}) {
  const s = new Socket(server.url, { transport: WebSocket, reconnectAfterMs: () => 50, ...opts });
  s.connect();
  return s;
}

/** Resolves with the reply payload of a push for the given status, rejects on others. */
export function receive(push, status = "ok", timeoutMs = 3000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("timeout waiting for " + status)), timeoutMs);
    for (const s of ["ok", "error", "timeout"]) {
      push.receive(s, (resp) => {
        clearTimeout(t);
        if (s === status) resolve(resp);
        else reject(new Error(`got ${s}: ${JSON.stringify(resp)}`));
      });
    }
  });
}

/** A raw WebSocket client that records every frame, for what phoenix.js can't express. */
export async function rawClient(server, query = "vsn=2.0.0", wsOpts = {}) {
  const ws = new WebSocket(`${server.url}/websocket?${query}`, wsOpts);
  const frames = [];
  const waiters = [];
  ws.on("message", (data, isBinary) => {
    const f = isBinary ? { binary: true, data: new Uint8Array(data) } : JSON.parse(data.toString());
    frames.push(f);
    waiters.splice(0).forEach((w) => w());
  });
  await once(ws, "open");
  const client = {
    ws,
    frames,
    send: (msg) => ws.send(typeof msg === "string" || msg instanceof Uint8Array ? msg : JSON.stringify(msg)),
    /** Waits until `pred` matches a recorded frame; returns it. */
    async waitFor(pred, timeoutMs = 3000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const f = frames.find(pred);
        if (f) return f;
        if (Date.now() > deadline) throw new Error("timeout; frames: " + JSON.stringify(frames));
        await new Promise((r) => { waiters.push(r); setTimeout(r, 50); });
      }
    },
    async closed(timeoutMs = 3000) {
      if (ws.readyState === WebSocket.CLOSED) return client.closeCode;
      const [code] = await Promise.race([
        once(ws, "close"),
        new Promise((_, rej) => setTimeout(() => rej(new Error("not closed")), timeoutMs)),
      ]);
      return code;
    },
    close: () => ws.close(),
  };
  ws.on("close", (code) => { client.closeCode = code; });
  return client;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
