// The panel's plain modules (API client, pricing, files, theme, waveform peaks) run in Node as they
// run in CEP: the API client against a real local HTTP server, files against the real filesystem.
"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const http = require("node:http");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");

const { Client, TokenStore, KeyRing, ApiError, parseRetryAfter } = require("../core/api");
const Pricing = require("../core/pricing");
const { FileStore, safeName, nameFromPrompt } = require("../core/files");
const Theme = require("../ui/theme");
const { computePeaks } = require("../ui/waveform");

class MemoryStorage {
  constructor() {
    this.map = new Map();
  }
  getItem(k) {
    return this.map.has(k) ? this.map.get(k) : null;
  }
  setItem(k, v) {
    this.map.set(k, String(v));
  }
  removeItem(k) {
    this.map.delete(k);
  }
}

/** A tiny auth server: access tokens "a1", "a2", ...; refresh tokens rotate; counts refreshes. */
async function authServer({ refreshDelayMs = 30, refuseRefresh = false } = {}) {
  const state = { refreshes: 0, access: "a1", refresh: "r1", seen: [] };
  const server = http.createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      state.seen.push({ method: req.method, url: req.url, auth: req.headers.authorization, key: req.headers["idempotency-key"] });
      const json = (status, data, headers = {}) => {
        res.writeHead(status, { "Content-Type": "application/json", ...headers });
        res.end(JSON.stringify(data));
      };
      if (req.url === "/v1/auth/refresh") {
        state.refreshes += 1;
        const sent = JSON.parse(body).refresh_token;
        setTimeout(() => {
          if (refuseRefresh || sent !== state.refresh) return json(401, { error: { code: "invalid_token", message: "no" } });
          state.access = "a" + (state.refreshes + 1);
          state.refresh = "r" + (state.refreshes + 1);
          json(200, { access_token: state.access, refresh_token: state.refresh, token_type: "Bearer", expires_in: 900 });
        }, refreshDelayMs);
        return;
      }
      if (req.url === "/v1/busy") return json(429, { error: { code: "rate_limited", message: "slow down" } }, { "Retry-After": "7" });
      if (req.url === "/v1/broke") {
        res.writeHead(502, { "Content-Type": "text/html" });
        return res.end("<html>bad gateway</html>");
      }
      if (req.headers.authorization !== "Bearer " + state.access) return json(401, { error: { code: "token_expired", message: "expired" } });
      json(200, { ok: true, path: req.url });
    });
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const base = `http://127.0.0.1:${server.address().port}`;
  return { state, base, close: () => new Promise((r) => server.close(r)) };
}

function client(base, storage, extra = {}) {
  return new Client({ baseUrl: base, fetch: fetch, tokens: new TokenStore(storage), ...extra });
}

test("concurrent requests with an expired access token share one refresh, then all succeed", async () => {
  const srv = await authServer();
  try {
    const storage = new MemoryStorage();
    const c = client(srv.base, storage);
    c.tokens.set({ access_token: "stale", refresh_token: "r1", expires_at: Date.now() + 600000 });
    const results = await Promise.all([1, 2, 3, 4, 5].map((i) => c.json("GET", "/v1/thing/" + i)));
    assert.deepEqual(results.map((r) => r.ok), [true, true, true, true, true]);
    assert.equal(srv.state.refreshes, 1, "single-flight refresh");
    assert.equal(c.tokens.get().refresh_token, "r2", "the rotated refresh token is stored");
  } finally {
    await srv.close();
  }
});

test("a token about to expire is refreshed before the request leaves", async () => {
  const srv = await authServer();
  try {
    const c = client(srv.base, new MemoryStorage());
    c.tokens.set({ access_token: "a1", refresh_token: "r1", expires_at: Date.now() + 5000 });
    await c.json("GET", "/v1/me");
    assert.equal(srv.state.refreshes, 1);
    assert.equal(srv.state.seen.at(-1).auth, "Bearer a2");
  } finally {
    await srv.close();
  }
});

test("a rejected refresh token signs the panel out and clears the stored tokens", async () => {
  const srv = await authServer({ refuseRefresh: true });
  try {
    let signedOut = 0;
    const c = client(srv.base, new MemoryStorage(), { onSignedOut: () => signedOut++ });
    c.tokens.set({ access_token: "stale", refresh_token: "r1", expires_at: Date.now() + 600000 });
    await assert.rejects(c.json("GET", "/v1/me"), { code: "signed_out", status: 401 });
    assert.equal(signedOut, 1);
    assert.equal(c.tokens.get(), null);
    assert.equal(c.isSignedIn(), false);
  } finally {
    await srv.close();
  }
});

test("error envelopes become ApiErrors with code, status and Retry-After; non-JSON errors too", async () => {
  const srv = await authServer();
  try {
    const c = client(srv.base, new MemoryStorage());
    await assert.rejects(c.json("GET", "/v1/busy", { auth: false }), (e) => e instanceof ApiError && e.code === "rate_limited" && e.retryAfter === 7 && e.status === 429);
    await assert.rejects(c.json("GET", "/v1/broke", { auth: false }), { code: "http_502", status: 502 });
  } finally {
    await srv.close();
  }
});

test("an unreachable server is a network error and an abort is a cancellation", async () => {
  const srv = await authServer();
  const base = srv.base;
  await srv.close();
  const c = client(base, new MemoryStorage());
  await assert.rejects(c.json("GET", "/v1/pricing", { auth: false }), { code: "network", status: 0 });
  const controller = new AbortController();
  controller.abort();
  await assert.rejects(c.json("GET", "/v1/pricing", { auth: false, signal: controller.signal }), { code: "cancelled" });
});

test("generation requests carry the Idempotency-Key header", async () => {
  const srv = await authServer();
  try {
    const c = client(srv.base, new MemoryStorage());
    c.tokens.set({ access_token: "a1", refresh_token: "r1", expires_at: Date.now() + 600000 });
    await c.generate("sfx", { prompt: "door" }, "key-123");
    assert.equal(srv.state.seen.at(-1).key, "key-123");
    assert.equal(srv.state.seen.at(-1).url, "/v1/sfx");
  } finally {
    await srv.close();
  }
});

test("the same request retried after a network error reuses its idempotency key; anything else gets a new one", () => {
  let n = 0;
  const ring = new KeyRing(() => "k" + ++n);
  const body = { prompt: "door", duration_seconds: 2 };
  const first = ring.keyFor("sfx", body);
  ring.settle(new ApiError(0, "network", "down"));
  assert.equal(ring.keyFor("sfx", { ...body }), first, "retry after network error");
  ring.settle(null);
  assert.notEqual(ring.keyFor("sfx", body), first, "a success ends the key's life");
  const third = ring.keyFor("sfx", body);
  ring.settle(new ApiError(402, "insufficient_credits", "no"));
  assert.notEqual(ring.keyFor("sfx", body), third, "a refused request is a new request next time");
  const fifth = ring.keyFor("sfx", body);
  ring.settle(new ApiError(0, "network", "down"));
  assert.notEqual(ring.keyFor("sfx", { ...body, prompt: "window" }), fifth, "a changed form is a new request");
});

test("Retry-After accepts seconds and HTTP dates", () => {
  const now = Date.parse("2026-01-01T00:00:00Z");
  assert.equal(parseRetryAfter("12", now), 12);
  assert.equal(parseRetryAfter("Thu, 01 Jan 2026 00:00:30 GMT", now), 30);
  assert.equal(parseRetryAfter(null, now), 0);
});

test("quotes follow the server's pricing rules: per started 10 s per variation, Auto at 30 s, voice per 250 chars", () => {
  const pricing = {
    rules: [
      { code: "sfx", unit: "second", unit_size: 10, credits_per_block: 1, per_variation: true, minimum_credits: 1, reserve_units: 30 },
      { code: "voice", unit: "character", unit_size: 250, credits_per_block: 1, per_variation: false, minimum_credits: 1, reserve_units: null },
    ],
  };
  assert.equal(Pricing.quoteSfx(pricing, { duration: 0.5, variations: 1 }), 1);
  assert.equal(Pricing.quoteSfx(pricing, { duration: 10, variations: 1 }), 1);
  assert.equal(Pricing.quoteSfx(pricing, { duration: 10.02, variations: 1 }), 1, "decoder slack is not a new block");
  assert.equal(Pricing.quoteSfx(pricing, { duration: 10.5, variations: 3 }), 6);
  assert.equal(Pricing.quoteSfx(pricing, { duration: null, variations: 2 }), 6);
  assert.equal(Pricing.quoteVoice(pricing, 0), 0);
  assert.equal(Pricing.quoteVoice(pricing, 250), 1);
  assert.equal(Pricing.quoteVoice(pricing, 251), 2);
  const doubled = { rules: { sfx: { unit: "second", unit_size: 5, credits_per_block: 2, per_variation: false, minimum_credits: 0, reserve_units: 20 } } };
  assert.equal(Pricing.quoteSfx(doubled, { duration: 6, variations: 4 }), 4, "rules given as a map work too");
  assert.deepEqual(Pricing.limits({ code: "free", max_variations: 1, max_sfx_seconds: 10, voice: true, max_voice_chars: 500 }), {
    voice: true,
    max_sfx_seconds: 10,
    max_variations: 1,
    max_voice_chars: 500,
  });
  assert.equal(Pricing.limits({ features: { max_variations: 4 } }).max_variations, 4);
});

test("files are written under readable unique names and never overwrite", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sfx files "));
  const store = new FileStore({ fs, path, os });
  const folder = path.join(dir, "nested", "AI SFX");
  const a = await store.writeUnique(folder, "door-slam-3f9a.wav", new Uint8Array([1, 2, 3]));
  const b = await store.writeUnique(folder, "door-slam-3f9a.wav", new Uint8Array([4, 5]));
  const c = await store.writeUnique(folder, "door-slam-3f9a.wav", new Uint8Array([6]).buffer);
  assert.equal(path.basename(a), "door-slam-3f9a.wav");
  assert.equal(path.basename(b), "door-slam-3f9a 2.wav");
  assert.equal(path.basename(c), "door-slam-3f9a 3.wav");
  assert.deepEqual([...fs.readFileSync(a)], [1, 2, 3], "the first file is untouched");
  assert.equal(await store.exists(b), true);
  assert.equal(await store.exists(path.join(folder, "nope.wav")), false);
  assert.deepEqual([...new Uint8Array(await store.read(c))], [6]);
});

test("the output folder is the configured one, else beside the saved project, else Documents/AI SFX", () => {
  const store = new FileStore({ fs, path, os });
  assert.equal(store.folderFor("/tmp/mine", "/p/Film.prproj"), "/tmp/mine");
  assert.equal(store.folderFor("", "/Volumes/Work/Film/Film.prproj"), "/Volumes/Work/Film/AI SFX");
  assert.equal(store.folderFor("", ""), path.join(os.homedir(), "Documents", "AI SFX"));
  assert.equal(store.folderFor("", "Untitled.prproj"), path.join(os.homedir(), "Documents", "AI SFX"), "an unsaved project");
});

test("file names are made safe for macOS and Windows", () => {
  assert.equal(safeName('a/b\\c:d*e?f"g<h>i|j.wav'), "a b c d e f g h i j.wav");
  assert.equal(safeName("CON.wav"), "_CON.wav");
  assert.equal(safeName("...", "mp3"), "sound.mp3");
  assert.equal(nameFromPrompt("Heavy wooden door SLAMS shut, in a stone hallway!", "wav"), "heavy-wooden-door-slams-shut-in.wav");
});

test("the palette follows Premiere's panel colour: dark and light themes get readable text", () => {
  const dark = Theme.palette({ background: { red: 35, green: 35, blue: 35 }, fontSize: 11 });
  const light = Theme.palette({ background: { red: 214, green: 214, blue: 214 }, fontSize: 13 });
  assert.equal(dark.scheme, "dark");
  assert.equal(light.scheme, "light");
  assert.equal(dark.vars["--bg"], "rgb(35, 35, 35)");
  assert.equal(light.vars["--font-size"], "13px");
  assert.ok(Theme.contrast(dark.vars["--text"], dark.vars["--bg"]) > 7);
  assert.ok(Theme.contrast(light.vars["--text"], light.vars["--bg"]) > 7);
});

test("waveform peaks keep the loudest sample of each column", () => {
  const samples = new Float32Array(1000);
  samples[10] = 0.75;
  samples[510] = -0.5;
  const peaks = computePeaks([samples], 10);
  assert.equal(peaks.length, 10);
  assert.deepEqual(peaks[0], [0, 0.75]);
  assert.deepEqual(peaks[5], [-0.5, 0]);
  assert.deepEqual(peaks[9], [0, 0]);
});

test("the manifest, package.json and the panel page carry the same version, and the manifest targets Premiere 23+ on CEP 11", () => {
  const root = path.join(__dirname, "..");
  const manifest = fs.readFileSync(path.join(root, "CSXS", "manifest.xml"), "utf8");
  const version = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8")).version;
  assert.match(manifest, new RegExp(`ExtensionBundleVersion="${version.replace(/\./g, "\\.")}"`));
  assert.match(manifest, /<Extension Id="com\.sfxstudio\.panel\.main" Version="[\d.]+"/);
  assert.match(manifest, /<Host Name="PPRO" Version="\[23\.0,99\.9\]"\s*\/>/);
  assert.match(manifest, /<RequiredRuntime Name="CSXS" Version="11\.0"\s*\/>/);
  assert.match(manifest, /<Parameter>--enable-nodejs<\/Parameter>/);
  assert.match(manifest, /<Parameter>--mixed-context<\/Parameter>/);
  assert.match(manifest, /<ScriptPath>\.\/cep\/host\.jsx<\/ScriptPath>/);
  for (const icon of manifest.match(/\.\/icons\/[^<]+/g)) assert.ok(fs.existsSync(path.join(root, icon)), icon);
  const html = fs.readFileSync(path.join(root, "index.html"), "utf8");
  assert.match(html, new RegExp(`data-version="${version.replace(/\./g, "\\.")}"`));
  for (const src of html.match(/(?<=src=")[^"]+/g)) assert.ok(fs.existsSync(path.join(root, src)), src);
});

test("only the CEP adapter talks to ExtendScript: no other panel script calls evalScript", () => {
  const root = path.join(__dirname, "..");
  const offenders = [];
  (function walk(dir) {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) {
        if (!["node_modules", "tests"].includes(entry.name)) walk(full);
      } else if (!entry.name.endsWith(".js")) continue;
      if (entry.isFile() && /evalScript\s*\(/.test(fs.readFileSync(full, "utf8"))) offenders.push(path.relative(root, full));
    }
  })(root);
  assert.deepEqual(offenders.sort(), ["cep/csinterface-lite.js", "cep/host-adapter.js"]);
});
