// The storage adapters: the shared key/value document (core/store.js), CEP's JSON file in the user's
// data folder with the one-time move out of localStorage (cep/storage.js, on the real filesystem),
// and UXP's split between secureStorage and plugin data (uxp/storage.js).
"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const vm = require("node:vm");

const Store = require("../core/store");
const { LocalCopies } = require("../core/history");
const Settings = require("../core/settings");

/** Loads a browser-only module (it attaches to window.SFX) and returns what it attached. */
function browserModule(file, name) {
  const window = { SFX: {} };
  vm.runInNewContext(fs.readFileSync(path.join(__dirname, "..", file), "utf8"), { window, TextDecoder, Promise, JSON, Object });
  return window.SFX[name];
}

class LegacyStorage {
  constructor(entries) {
    this.map = new Map(Object.entries(entries));
  }
  getItem(k) {
    return this.map.has(k) ? this.map.get(k) : null;
  }
  removeItem(k) {
    this.map.delete(k);
  }
}

test("tokens go to the secret backend and everything else to the plain one; reads are synchronous", async () => {
  const plain = Store.memoryBackend();
  const secret = Store.memoryBackend();
  const kv = await Store.open(plain, secret);
  const tokens = Store.tokenStore(kv);
  tokens.set({ access_token: "a", refresh_token: "r" });
  await kv.set("settings", { bin: "Foley" });
  assert.deepEqual(tokens.get(), { access_token: "a", refresh_token: "r" });
  assert.deepEqual(secret.peek(), { tokens: { access_token: "a", refresh_token: "r" } });
  assert.deepEqual(plain.peek(), { settings: { bin: "Foley" } });
  tokens.clear();
  await kv.set("local", {});
  assert.deepEqual(secret.peek(), {});
  // Opened again, the panel finds what it saved.
  const again = await Store.open(plain, secret);
  assert.deepEqual(Settings.load(again).bin, "Foley");
});

test("writes queue up: while one runs only the newest document follows, so the last change wins", async () => {
  let release;
  const written = [];
  const slow = {
    read: async () => null,
    write: (doc) => new Promise((resolve) => {
      written.push(JSON.stringify(doc));
      release = resolve;
    }),
  };
  const kv = await Store.open(slow);
  kv.set("a", 1);
  await new Promise((r) => setImmediate(r)); // the first write is now under way
  kv.set("a", 2);
  const last = kv.set("a", 3);
  release();
  await new Promise((r) => setImmediate(r));
  release();
  await last;
  assert.deepEqual(written, ['{"a":1}', '{"a":3}']);
});

test("a broken document opens empty instead of keeping the panel from starting", async () => {
  const kv = await Store.open({ read: async () => { throw new SyntaxError("Unexpected token"); }, write: async () => {} });
  assert.equal(kv.get("settings"), null);
  assert.equal(Settings.load(kv).bin, "AI SFX");
});

test("the history map keeps the newest 500 generations and moves a re-saved one to the end", async () => {
  const kv = await Store.open(Store.memoryBackend());
  const local = new LocalCopies(kv, 3);
  for (const id of ["a", "b", "c"]) await local.remember(id, `/x/${id}.wav`);
  await local.remember("a", "/x/a2.wav");
  await local.remember("d", "/x/d.wav");
  assert.equal(local.path("b"), null);
  assert.deepEqual(Object.keys(kv.get("local")), ["c", "a", "d"]);
  assert.equal(local.path("a"), "/x/a2.wav");
});

test("CEP keeps one JSON file in the user's data folder and moves the old localStorage keys into it once", async () => {
  const CepStorage = browserModule("cep/storage.js", "CepStorage");
  const data = fs.mkdtempSync(path.join(os.tmpdir(), "sfx userData "));
  const legacy = new LegacyStorage({ "sfx.tokens": '{"refresh_token":"r1"}', "sfx.settings": '{"bin":"Old bin"}', "sfx.other": "kept" });
  const backend = CepStorage.backend({ fs, path }, data, legacy);
  const kv = await Store.open(backend);
  assert.equal(kv.get("tokens").refresh_token, "r1");
  assert.equal(Settings.load(kv).bin, "Old bin");
  assert.equal(legacy.getItem("sfx.tokens"), '{"refresh_token":"r1"}', "nothing is removed before the file is written");
  await kv.set("settings", { bin: "New bin" });
  const file = path.join(data, "SFX Studio", "panel.json");
  assert.deepEqual(JSON.parse(fs.readFileSync(file, "utf8")), { tokens: { refresh_token: "r1" }, settings: { bin: "New bin" } });
  assert.equal(legacy.getItem("sfx.tokens"), null);
  assert.equal(legacy.getItem("sfx.settings"), null);
  assert.equal(legacy.getItem("sfx.other"), "kept");
  assert.deepEqual(fs.readdirSync(path.dirname(file)), ["panel.json"], "no temporary file is left behind");
  // A Premiere update changes nothing: the next panel reads the same file.
  const reopened = await Store.open(CepStorage.backend({ fs, path }, data, new LegacyStorage({})));
  assert.equal(reopened.get("tokens").refresh_token, "r1");
});

test("UXP keeps the tokens in secureStorage and the rest in plugin data", async () => {
  const UxpStorage = browserModule("uxp/storage.js", "UxpStorage");
  const files = new Map();
  const uxpFs = {
    readFile: async (p) => {
      if (!files.has(p)) throw new Error("ENOENT");
      return files.get(p);
    },
    writeFile: async (p, text) => files.set(p, text),
  };
  const secure = new Map();
  const secureStorage = {
    setItem: async (k, v) => secure.set(k, new TextEncoder().encode(v)),
    getItem: async (k) => secure.get(k),
    removeItem: async (k) => secure.delete(k),
  };
  const kv = await Store.open(UxpStorage.plain(uxpFs), UxpStorage.secret(secureStorage));
  Store.tokenStore(kv).set({ refresh_token: "r9" });
  await kv.set("settings", { track: "2" });
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(JSON.parse(new TextDecoder().decode(secure.get("sfx.tokens"))), { tokens: { refresh_token: "r9" } });
  assert.deepEqual(JSON.parse(files.get("plugin-data:/panel.json")), { settings: { track: "2" } });
  const again = await Store.open(UxpStorage.plain(uxpFs), UxpStorage.secret(secureStorage));
  assert.equal(again.get("tokens").refresh_token, "r9");
  Store.tokenStore(again).clear();
  await new Promise((r) => setImmediate(r));
  assert.equal(secure.has("sfx.tokens"), false, "signing out removes the secret entry");
});
