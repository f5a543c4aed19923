// Shared by the browser tests: start an app binary on port 0 and read its address, launch
// headless Chromium (Debian's /usr/bin/chromium) through playwright-core, screenshots into
// artifacts/ (gitignored).
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
export const ARTIFACTS = path.join(here, "artifacts");
const BIN_DIR = process.env.APPS_BIN_DIR || path.join(process.env.CARGO_TARGET_DIR || path.join(root, "target"), "debug");
const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";

/** Starts `bin` (an app of apps/) with `--port 0` (or `port`) and extra args; resolves with
 *  `{url, addr, stop(), proc}` once it printed `listening on ADDR`. */
export function startApp(bin, { args = [], port = 0, env = {} } = {}) {
  const exe = path.join(BIN_DIR, bin);
  if (!fs.existsSync(exe)) throw new Error(`${exe} is missing: cargo build -p apps (or set APPS_BIN_DIR)`);
  const proc = spawn(exe, ["--port", String(port), ...args], { env: { ...process.env, RUST_LOG: "warn", ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  proc.stderr.on("data", (d) => { stderr += d; });
  return new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => { proc.kill("SIGKILL"); reject(new Error(`${bin} did not start in 15 s: ${stderr}`)); }, 15000);
    proc.on("exit", (code) => { clearTimeout(timer); reject(new Error(`${bin} exited with ${code}: ${stderr}`)); });
    proc.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/listening on (\S+)/);
      if (m) {
        clearTimeout(timer);
        proc.removeAllListeners("exit");
        const stop = (signal = "SIGTERM") => new Promise((res) => {
          if (proc.exitCode !== null || proc.signalCode !== null) return res();
          proc.once("exit", () => res());
          proc.kill(signal);
        });
        resolve({ addr: m[1], url: `http://${m[1]}`, port: Number(m[1].split(":").pop()), proc, stop, stderr: () => stderr });
      }
    });
  });
}

export async function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  });
}

/** A new browser context (one user) with a page on `url`; console errors are collected. */
export async function user(browser, url) {
  const context = await browser.newContext({ viewport: { width: 1000, height: 700 } });
  const page = await context.newPage();
  page.errors = [];
  page.on("pageerror", (e) => page.errors.push(String(e)));
  page.setDefaultTimeout(5000);
  await page.goto(url);
  return page;
}

export async function screenshot(page, name) {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
}

/** Waits until `fn()` (run in the page) returns truthy; the message names what was awaited. */
export async function until(page, fn, arg, what) {
  try {
    await page.waitForFunction(fn, arg, { timeout: 5000 });
  } catch (e) {
    throw new Error(`timed out waiting for ${what}: ${e.message.split("\n")[0]}`);
  }
}

/** The text of every element matching `selector`. */
export function texts(page, selector) {
  return page.$$eval(selector, (els) => els.map((e) => e.textContent.trim()));
}
