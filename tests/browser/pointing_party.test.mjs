// Pointing party in two browsers: presence list, start pointing (the clicker drives), votes
// visible as presence, the winner and the tie, and the `new_card` intercept clearing votes.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startApp, launch, user, screenshot, texts } from "./harness.mjs";

let app, browser;
before(async () => { app = await startApp("pointing_party"); browser = await launch(); });
after(async () => { await browser?.close(); await app?.stop(); });

async function login(page, name) {
  await page.fill("#username", name);
  await page.click("#login button");
  await page.waitForSelector("#room-view:not(.hidden)");
}

const users = (page) => texts(page, "#users li");
const status = (page, name) => page.getAttribute(`#users li[data-user="${name}"]`, "data-voted");
async function waitStatus(page, name, want) {
  await page.waitForSelector(`#users li[data-user="${name}"][data-voted="${want}"]`);
}

test("two users point two cards: winner, intercept clears votes, tie", async () => {
  const alice = await user(browser, app.url);
  const bob = await user(browser, app.url);
  await login(alice, "alice");
  await login(bob, "bob");

  for (const page of [alice, bob]) {
    await page.waitForSelector('#users li[data-user="bob"]');
    await page.waitForSelector('#users li[data-user="alice"]');
    assert.equal((await users(page)).length, 2);
  }

  // Alice starts: both see the first card; Alice drives (only she has "Next card").
  await alice.click("#start");
  for (const page of [alice, bob]) {
    await page.waitForSelector("#card:not(.hidden)");
    assert.equal(await page.textContent("#card-id"), "PP-1");
    assert.equal(await page.textContent("#driver"), "alice");
  }
  assert.equal(await alice.isVisible("#next"), true);
  assert.equal(await bob.isVisible("#next"), false);

  // Alice votes: both see that she voted and Bob did not; no result yet.
  await alice.click('button.point[data-points="3"]');
  for (const page of [alice, bob]) {
    await waitStatus(page, "alice", "yes");
    assert.equal(await status(page, "bob"), "no");
    assert.equal(await page.textContent("#result"), "");
  }
  // Bob votes last: both see the winner.
  await bob.click('button.point[data-points="3"]');
  for (const page of [alice, bob]) {
    await page.waitForFunction(() => document.getElementById("result").textContent.includes("Winner"));
    assert.equal(await page.textContent("#result"), "Winner: 3 points");
  }
  await screenshot(alice, "pointing_party-winner-alice");
  await screenshot(bob, "pointing_party-winner-bob");

  // Bob is not the driver: the server refuses his "next card".
  const refused = await bob.evaluate(() => new Promise((res) => {
    // the page's channel is module-scoped; push through a second join of the same socket is
    // not possible, so click the hidden button through the DOM instead
    document.getElementById("next").click();
    setTimeout(() => res(document.getElementById("card-id").textContent), 300);
  }));
  assert.equal(refused, "PP-1", "a non-driver cannot deal the next card");

  // Next card: the intercepted new_card clears every user's vote (in presence) before the
  // card is pushed: both see both users waiting again.
  await alice.click("#next");
  for (const page of [alice, bob]) {
    await page.waitForFunction(() => document.getElementById("card-id").textContent === "PP-2");
    await waitStatus(page, "alice", "no");
    await waitStatus(page, "bob", "no");
    assert.equal(await page.textContent("#result"), "");
  }
  // The presence metas themselves were cleared (not only hidden by the page): the intercept.
  for (const page of [alice, bob]) {
    await page.waitForFunction(() => [...document.querySelectorAll("#users li")].every((li) => li.dataset.points === ""));
  }

  // A tie.
  await alice.click('button.point[data-points="5"]');
  await waitStatus(bob, "alice", "yes");
  await bob.click('button.point[data-points="8"]');
  for (const page of [alice, bob]) {
    await page.waitForFunction(() => document.getElementById("result").textContent.includes("Tie"));
    assert.equal(await page.textContent("#result"), "Tie: 5, 8");
  }
  await screenshot(bob, "pointing_party-tie-bob");

  // Bob leaves: Alice's list shrinks.
  await bob.context().close();
  await alice.waitForFunction(() => !document.querySelector('#users li[data-user="bob"]'));
  assert.deepEqual(alice.errors, []);
});
