// Chat in two browsers: messages, "who is typing" from presence, and the sender from the
// verified token: a forged `user` in the payload is ignored, a forged token is refused.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startApp, launch, user, screenshot, texts } from "./harness.mjs";

let app, browser;
before(async () => { app = await startApp("chat"); browser = await launch(); });
after(async () => { await browser?.close(); await app?.stop(); });

async function login(page, name) {
  await page.fill("#name", name);
  await page.click("#login button");
  await page.waitForSelector("#chat-view:not(.hidden)");
}

test("messages, typing state and the verified sender", async () => {
  const alice = await user(browser, app.url);
  const bob = await user(browser, app.url);
  await login(alice, "alice");
  await login(bob, "bob");
  for (const page of [alice, bob]) {
    await page.waitForFunction(() => document.querySelectorAll("#people li").length === 2);
    assert.deepEqual((await texts(page, "#people li")).sort(), ["alice", "bob"]);
  }

  await alice.fill("#body", "");
  await alice.type("#body", "hel");
  await bob.waitForFunction(() => document.getElementById("typing").textContent === "alice is typing…");
  assert.equal((await alice.textContent("#typing")).trim(), "", "one does not see oneself typing");
  await screenshot(bob, "chat-typing");

  await alice.type("#body", "lo bob");
  await alice.press("#body", "Enter");
  for (const page of [alice, bob]) {
    await page.waitForFunction(() => document.querySelectorAll("#messages li").length === 1);
    assert.deepEqual(await texts(page, "#messages li"), ["alice: hello bob"]);
  }
  await bob.waitForFunction(() => document.getElementById("typing").textContent.trim() === "");

  await bob.type("#body", "hi alice");
  await alice.waitForFunction(() => document.getElementById("typing").textContent === "bob is typing…");
  await bob.press("#body", "Enter");
  await alice.waitForFunction(() => document.querySelectorAll("#messages li").length === 2);
  assert.deepEqual(await texts(alice, "#messages li"), ["alice: hello bob", "bob: hi alice"]);

  // A forged sender in the payload: the server stamps the verified identity.
  await bob.evaluate(() => window.chat.channel.push("new_msg", { body: "I am alice", user: "alice" }));
  for (const page of [alice, bob]) {
    await page.waitForFunction(() => document.querySelectorAll("#messages li").length === 3);
    assert.equal((await texts(page, "#messages li"))[2], "bob: I am alice");
  }
  await screenshot(alice, "chat-messages");

  // A forged token is refused (403 at connect).
  const refused = await bob.evaluate(async () => {
    const { Socket } = await import("/phoenix.mjs");
    return new Promise((resolve) => {
      const s = new Socket("/socket", { params: { token: "SFMyNTY.forged.token" }, reconnectAfterMs: () => 60000 });
      s.onError(() => { s.disconnect(); resolve(true); });
      s.onOpen(() => { s.disconnect(); resolve(false); });
      s.connect();
    });
  });
  assert.equal(refused, true);
  for (const page of [alice, bob]) assert.deepEqual(page.errors, []);
});
