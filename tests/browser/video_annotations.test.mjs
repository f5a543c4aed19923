// Video annotations in two browsers: token login, presence with connection counts,
// annotations persisted in SQLite, shown once after a reload AND after the app process is
// killed and restarted (the pages reconnect and rejoin with their last_seen_id), played
// against the timeline.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { startApp, launch, user, screenshot, texts } from "./harness.mjs";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "video-annotations-"));
const db = path.join(dir, "annotations.db");
let app, browser;
before(async () => { app = await startApp("video_annotations", { args: ["--db", db] }); browser = await launch(); });
after(async () => { await browser?.close(); await app?.stop(); fs.rmSync(dir, { recursive: true, force: true }); });

async function login(page, name) {
  await page.fill("#name", name);
  await page.click("#login button");
  await page.waitForSelector("#video-view:not(.hidden)");
}
const notes = (page) => texts(page, "#annotations li");
async function waitNotes(page, n) {
  await page.waitForFunction((n) => document.querySelectorAll("#annotations li").length === n, n);
}
async function seek(page, ms) {
  await page.$eval("#timeline", (el, ms) => { el.value = ms; el.dispatchEvent(new Event("input")); }, ms);
}
async function annotate(page, ms, body) {
  await seek(page, ms);
  await page.fill("#body", body);
  await page.press("#body", "Enter");
}

test("annotations persist across reloads and app restarts, without duplicates", async () => {
  const alice = await user(browser, app.url);
  const bob = await user(browser, app.url);
  await login(alice, "alice");
  await login(bob, "bob");
  for (const page of [alice, bob]) await page.waitForFunction(() => document.querySelectorAll("#viewers li").length === 2);

  // Alice in a second tab: one viewer, two connections.
  const alice2 = await user(browser, app.url);
  await login(alice2, "alice");
  await bob.waitForSelector('#viewers li[data-user="alice"][data-count="2"]');
  assert.equal(await bob.getAttribute('#viewers li[data-user="bob"]', "data-count"), "1");
  await alice2.context().close();
  await bob.waitForSelector('#viewers li[data-user="alice"][data-count="1"]');

  await annotate(alice, 5000, "the intro starts");
  await annotate(bob, 12000, "nice cut");
  for (const page of [alice, bob]) await waitNotes(page, 2);
  assert.deepEqual((await notes(bob)).map((t) => t.replace(/\s+/g, " ")), ["0:05alice: the intro starts", "0:12bob: nice cut"]);

  // Played against the timeline.
  await seek(bob, 8000);
  assert.deepEqual(await bob.$$eval("#annotations li", (els) => els.map((e) => e.dataset.played)), ["yes", "no"]);
  await seek(bob, 15000);
  assert.deepEqual(await bob.$$eval("#annotations li", (els) => els.map((e) => e.dataset.played)), ["yes", "yes"]);

  // Reload: logged in again from the session, the join reply brings them back once.
  await bob.reload();
  await bob.waitForSelector("#video-view:not(.hidden)");
  await waitNotes(bob, 2);

  // Kill the app (no drain) and restart it on the same port and database.
  await app.stop("SIGKILL");
  app = await startApp("video_annotations", { args: ["--db", db], port: app.port });
  // Both pages reconnect and rejoin with last_seen_id: presence comes back, nothing doubles.
  for (const page of [alice, bob]) await page.waitForFunction(() => document.querySelectorAll("#viewers li").length === 2, null, { timeout: 15000 });
  await alice.waitForTimeout(300);
  for (const page of [alice, bob]) assert.equal((await notes(page)).length, 2, "no duplicates after the rejoin");

  await annotate(alice, 30000, "after the restart");
  for (const page of [alice, bob]) await waitNotes(page, 3);
  await alice.reload();
  await alice.waitForSelector("#video-view:not(.hidden)");
  await waitNotes(alice, 3);
  assert.deepEqual((await notes(alice)).map((t) => t.replace(/\s+/g, " ")), ["0:05alice: the intro starts", "0:12bob: nice cut", "0:30alice: after the restart"]);
  await seek(alice, 20000);
  await screenshot(alice, "video_annotations-after-restart");
  for (const page of [alice, bob]) assert.deepEqual(page.errors, []);
});

test("a socket with a forged token is refused", async () => {
  const page = await user(browser, app.url);
  const refused = await page.evaluate(async () => {
    const { Socket } = await import("/phoenix.mjs");
    return new Promise((resolve) => {
      const s = new Socket("/socket", { params: { token: "SFMyNTY.e30.forged" }, reconnectAfterMs: () => 60000 });
      s.onError(() => { s.disconnect(); resolve(true); });
      s.onOpen(() => { s.disconnect(); resolve(false); });
      s.connect();
    });
  });
  assert.equal(refused, true);
});
