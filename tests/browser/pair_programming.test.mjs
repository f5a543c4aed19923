// Pair programming in two browsers: the join reply carries the challenge, typing updates the
// stored response and reaches the other (broadcast_from), presence shows the typing indicator
// while typing and clears it on blur; a late joiner gets the current response.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startApp, launch, user, screenshot, texts } from "./harness.mjs";

let app, browser;
before(async () => { app = await startApp("pair_programming"); browser = await launch(); });
after(async () => { await browser?.close(); await app?.stop(); });

async function join(page, name, challenge = "1") {
  await page.fill("#name", name);
  await page.fill("#challenge", challenge);
  await page.click("#login button");
  await page.waitForSelector("#room-view:not(.hidden)");
}

test("two programmers share a response, with typing indicators", async () => {
  const alice = await user(browser, app.url);
  const bob = await user(browser, app.url);
  await join(alice, "alice");
  await join(bob, "bob");
  for (const page of [alice, bob]) {
    assert.equal(await page.textContent("#prompt"), "Write a function that reverses a string.");
    assert.equal(await page.inputValue("#response"), "");
    await page.waitForFunction(() => document.querySelectorAll("#people li").length === 2);
    assert.deepEqual((await texts(page, "#people li")).sort(), ["alice", "bob"]);
  }

  await alice.click("#response");
  await alice.keyboard.type("fn rev(s: &str)");
  await bob.waitForFunction(() => document.getElementById("response").value === "fn rev(s: &str)");
  await bob.waitForSelector('#people li[data-user="alice"][data-typing="yes"]');
  assert.equal(await bob.textContent("#last-edit"), "Last edit by alice");
  assert.equal(await bob.getAttribute('#people li[data-user="bob"]', "data-typing"), "no");
  await screenshot(bob, "pair_programming-typing");

  // Blur clears the indicator for everyone.
  await alice.click("#prompt");
  for (const page of [alice, bob]) await page.waitForSelector('#people li[data-user="alice"][data-typing="no"]');

  // Bob answers; alice gets it (not echoed back to bob: broadcast_from).
  await bob.click("#response");
  await bob.keyboard.press("End");
  await bob.keyboard.type(" -> String");
  await alice.waitForFunction(() => document.getElementById("response").value === "fn rev(s: &str) -> String");
  await alice.waitForSelector('#people li[data-user="bob"][data-typing="yes"]');
  assert.equal(await alice.textContent("#last-edit"), "Last edit by bob");
  assert.equal(await bob.textContent("#last-edit"), "Last edit by alice", "the author does not receive its own update");

  // A late joiner: the join reply carries the stored response.
  const carol = await user(browser, app.url);
  await join(carol, "carol");
  assert.equal(await carol.inputValue("#response"), "fn rev(s: &str) -> String");
  await carol.waitForSelector('#people li[data-user="bob"][data-typing="yes"]');
  await screenshot(carol, "pair_programming-late-joiner");

  // Another challenge is another room.
  const dave = await user(browser, app.url);
  await join(dave, "dave", "2");
  assert.equal(await dave.textContent("#prompt"), "Write FizzBuzz for 1..=15.");
  assert.equal(await dave.inputValue("#response"), "");
  assert.deepEqual(await texts(dave, "#people li"), ["dave"]);
  for (const page of [alice, bob, carol, dave]) assert.deepEqual(page.errors, []);
});
