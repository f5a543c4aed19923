// Training center in three browsers: a trainer and two participants. A completed exercise is
// pushed back to its participant only; the intercepted status_updated reaches trainers only;
// the trainer starts the session with a plain HTTP POST on the same port (a broadcast from
// outside the channel) and everyone sees it.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startApp, launch, user, screenshot, texts } from "./harness.mjs";

let app, browser;
before(async () => { app = await startApp("training_center"); browser = await launch(); });
after(async () => { await browser?.close(); await app?.stop(); });

async function join(page, name, role, session = "42") {
  await page.fill("#name", name);
  await page.selectOption("#role", role);
  await page.fill("#session", session);
  await page.click("#login button");
  await page.waitForSelector("#session-view:not(.hidden)");
}

test("participants' progress reaches trainers only; the trainer starts over HTTP", async () => {
  const trainer = await user(browser, app.url);
  const ann = await user(browser, app.url);
  const bob = await user(browser, app.url);
  await join(trainer, "tess", "trainer");
  await join(ann, "ann", "participant");
  await join(bob, "bob", "participant");

  for (const page of [trainer, ann, bob]) {
    await page.waitForFunction(() => document.querySelectorAll("#people li").length === 3);
    assert.deepEqual((await texts(page, "#people li")).sort(), ["ann participant", "bob participant", "tess trainer"]);
  }
  assert.equal(await trainer.isVisible("#start"), true);
  assert.equal(await ann.isVisible("#start"), false);

  // Ann completes exercise 1: pushed back to her only; the trainer gets the status.
  await ann.click('button.done[data-exercise="1"]');
  await ann.waitForSelector("#completed li");
  assert.deepEqual(await texts(ann, "#completed li"), ["✓ Push an event"]);
  await trainer.waitForSelector("#status li");
  assert.deepEqual(await texts(trainer, "#status li"), ["ann completed “Push an event”"]);

  await bob.click('button.done[data-exercise="0"]');
  await trainer.waitForFunction(() => document.querySelectorAll("#status li").length === 2);
  assert.deepEqual(await texts(trainer, "#status li"), ["ann completed “Push an event”", "bob completed “Warm-up: join a channel”"]);
  assert.deepEqual(await texts(bob, "#completed li"), ["✓ Warm-up: join a channel"]);
  // The intercept: participants never received status_updated (not even their own).
  await ann.waitForTimeout(200);
  for (const page of [ann, bob]) assert.equal((await texts(page, "#status li")).length, 0);
  assert.deepEqual(await texts(ann, "#completed li"), ["✓ Push an event"], "bob's completion is not pushed to ann");
  assert.equal((await texts(trainer, "#completed li")).length, 0);

  // The trainer starts the session: a plain HTTP POST, broadcast from outside the channel.
  await trainer.click("#start");
  for (const page of [trainer, ann, bob]) {
    await page.waitForSelector('#state[data-started="yes"]');
    assert.equal(await page.textContent("#state"), "Session started by tess");
  }
  await screenshot(trainer, "training_center-trainer");
  await screenshot(ann, "training_center-participant");

  // The endpoint itself: same port, plain HTTP; another session's members are not told.
  const r = await fetch(`${app.url}/sessions/other/start`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ trainer: "x" }) });
  assert.equal(r.status, 200);
  assert.deepEqual(await r.json(), { started: "other" });
  assert.equal((await fetch(`${app.url}/sessions/1/start`, { method: "POST", body: "not json" })).status, 400);
  for (const page of [trainer, ann, bob]) assert.deepEqual(page.errors, []);
});

test("a socket without a valid role is refused", async () => {
  const page = await user(browser, app.url);
  const status = await page.evaluate(async () => {
    const { Socket } = await import("/phoenix.mjs");
    return new Promise((resolve) => {
      const socket = new Socket("/socket", { params: { name: "x", role: "admin" }, reconnectAfterMs: () => 60000 });
      socket.onError(() => { socket.disconnect(); resolve("refused"); });
      socket.onOpen(() => { socket.disconnect(); resolve("open"); });
      socket.connect();
    });
  });
  assert.equal(status, "refused");
});
