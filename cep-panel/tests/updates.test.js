// Panel updates end to end in Node: a local HTTP server serves manifests signed with real Ed25519
// keys and real zip packages; the panel's code (core/updates.js) decides, and the CEP installer
// (cep/installer.js) downloads and installs into temporary folders, running a fake UPIA executable.
// Every refusal is checked to leave nothing installed.
"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const http = require("node:http");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const crypto = require("node:crypto");
const zlib = require("node:zlib");

const Updates = require("../core/updates");
const { createInstaller, upiaCandidates, SUCCESS_LINE } = require("../cep/installer");

const BUNDLE = "com.sfxstudio.panel";
const HOUR = 3600 * 1000;

// --- fixtures: keys, canonical JSON, zips, a server -------------------------------------------------------

function keyPair() {
  const { publicKey, privateKey } = crypto.generateKeyPairSync("ed25519");
  const raw = publicKey.export({ format: "der", type: "spki" }).subarray(12);
  return { kid: crypto.createHash("sha256").update(raw).digest("hex").slice(0, 16), key: raw.toString("base64"), privateKey };
}

/** The server's canonical form: sorted keys, no spaces (server/releases/signing.py). */
function canonical(value) {
  if (Array.isArray(value)) return "[" + value.map(canonical).join(",") + "]";
  if (value && typeof value === "object") {
    return "{" + Object.keys(value).sort().map((k) => JSON.stringify(k) + ":" + canonical(value[k])).join(",") + "}";
  }
  return JSON.stringify(value);
}

function signed(document, keys) {
  const body = Buffer.from(canonical(document));
  const header = keys.map((k) => k.kid + ":" + crypto.sign(null, body, k.privateKey).toString("base64")).join(",");
  return { body, header };
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** A zip (deflated entries) from {name: content}. */
function zip(files) {
  const locals = [];
  const centrals = [];
  let offset = 0;
  for (const [name, content] of Object.entries(files)) {
    const data = Buffer.from(content);
    const packed = zlib.deflateRawSync(data);
    const nameBuf = Buffer.from(name);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(8, 8);
    local.writeUInt32LE(crc32(data), 14);
    local.writeUInt32LE(packed.length, 18);
    local.writeUInt32LE(data.length, 22);
    local.writeUInt16LE(nameBuf.length, 26);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(20, 4);
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(8, 10);
    central.writeUInt32LE(crc32(data), 16);
    central.writeUInt32LE(packed.length, 20);
    central.writeUInt32LE(data.length, 24);
    central.writeUInt16LE(nameBuf.length, 28);
    central.writeUInt32LE(offset, 42);
    locals.push(local, nameBuf, packed);
    centrals.push(central, nameBuf);
    offset += 30 + nameBuf.length + packed.length;
  }
  const dir = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(centrals.length / 2, 8);
  end.writeUInt16LE(centrals.length / 2, 10);
  end.writeUInt32LE(dir.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, dir, end]);
}

function panelFiles(version, bundleId = BUNDLE) {
  return {
    "mimetype": "application/vnd.adobe.air-ucf-package+zip",
    "CSXS/manifest.xml": `<ExtensionManifest Version="7.0" ExtensionBundleId="${bundleId}" ExtensionBundleVersion="${version}"/>`,
    "index.html": `<!doctype html><title>SFX Studio ${version}</title>`,
    "js/app.js": "console.log(" + JSON.stringify(version) + ");\n".repeat(200),
    "META-INF/signatures.xml": "<signatures/>",
  };
}

function zxp(version, bundleId) {
  return zip(panelFiles(version, bundleId));
}

function sha256(buf) {
  return crypto.createHash("sha256").update(buf).digest("hex");
}

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

/** The update server: a signed manifest and the package bytes, both replaceable per test. */
async function updateServer() {
  const state = { manifest: null, packageBytes: Buffer.alloc(0), requests: [] };
  const server = http.createServer((req, res) => {
    state.requests.push({ url: req.url, headers: req.headers });
    if (req.url.startsWith("/v1/updates/")) {
      res.writeHead(200, { "Content-Type": "application/json", "X-Update-Signatures": state.manifest.header });
      return res.end(state.manifest.body);
    }
    if (req.url.startsWith("/downloads/")) {
      res.writeHead(200, { "Content-Type": "application/zip", "Content-Length": state.packageBytes.length });
      return res.end(state.packageBytes);
    }
    res.writeHead(404);
    res.end();
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  state.base = `http://127.0.0.1:${server.address().port}`;
  state.close = () => new Promise((resolve) => server.close(resolve));
  return state;
}

function manifest(server, overrides = {}, latest = {}) {
  const now = Date.now();
  const bytes = server.packageBytes;
  return {
    product: "cep",
    channel: "stable",
    serial: 7,
    issued_at: new Date(now - HOUR).toISOString().replace(/\.\d+Z$/, "Z"),
    expires_at: new Date(now + 48 * HOUR).toISOString().replace(/\.\d+Z$/, "Z"),
    min_supported_version: null,
    ...overrides,
    latest: {
      version: "1.1.0",
      url: server.base + "/downloads/cep/1.1.0",
      sha256: sha256(bytes),
      size: bytes.length,
      notes: "Faster",
      notes_html: "<p>Faster</p>",
      min_host_version: "23.0",
      published_at: "2026-11-28T10:00:00Z",
      dev_build: false,
      rollout: { percent: 100, salt: "s4lt" },
      ...latest,
    },
  };
}

/** A temporary "machine": an extensions folder holding version 1.0.0, and a temp folder. */
function machine() {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "sfx-updates-"));
  const extensions = path.join(root, "CEP", "extensions");
  const current = path.join(extensions, BUNDLE);
  for (const [name, content] of Object.entries(panelFiles("1.0.0"))) {
    fs.mkdirSync(path.dirname(path.join(current, name)), { recursive: true });
    fs.writeFileSync(path.join(current, name), content);
  }
  const tmp = path.join(root, "tmp");
  fs.mkdirSync(tmp);
  return { root, extensions, current, tmp, cleanup: () => fs.rmSync(root, { recursive: true, force: true }) };
}

/** A fake UnifiedPluginInstallerAgent: records its arguments, prints what it is told to. */
function fakeUpia(dir, output, exitCode = 0) {
  const exe = path.join(dir, "UnifiedPluginInstallerAgent");
  const record = path.join(dir, "upia-args.json");
  fs.writeFileSync(
    exe,
    `#!${process.execPath}\nrequire("fs").writeFileSync(${JSON.stringify(record)}, JSON.stringify(process.argv.slice(2)));\n` +
      `process.stdout.write(${JSON.stringify(output)});\nprocess.exit(${exitCode});\n`
  );
  fs.chmodSync(exe, 0o755);
  return { exe, record, ran: () => fs.existsSync(record), args: () => JSON.parse(fs.readFileSync(record, "utf8")) };
}

function listTree(dir) {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { recursive: true }).sort();
}

/** What the panel does: check, and install only what was offered. */
async function checkAndInstall(server, machineDirs, opts) {
  const result = await Updates.check({
    baseUrl: server.base, product: "cep", channel: "stable", installedVersion: "1.0.0", fetch,
    storage: opts.storage || new MemoryStorage(), publicKeys: opts.publicKeys, now: opts.now, hostVersion: "25.0",
  });
  let installed = null;
  if (result.offer) {
    const installer = createInstaller({ platform: "darwin", extensionsDir: machineDirs.extensions, tmpDir: machineDirs.tmp, upiaPaths: opts.upiaPaths || [] });
    installed = await Updates.install(result.offer, { installer, onProgress: opts.onProgress });
  }
  return { result, installed };
}

// --- the manifest --------------------------------------------------------------------------------------------

test("a correctly signed manifest offers the newer version with its notes and size", async (t) => {
  const server = await updateServer();
  t.after(server.close);
  const key = keyPair();
  server.packageBytes = zxp("1.1.0");
  server.manifest = signed(manifest(server), [key]);
  const result = await Updates.check({
    baseUrl: server.base, product: "cep", installedVersion: "1.0.0", fetch, storage: new MemoryStorage(), publicKeys: [key],
  });
  assert.equal(result.refused, false);
  assert.deepEqual(
    { version: result.offer.version, size: result.offer.size, mandatory: result.offer.mandatory, notes: result.offer.notes_html },
    { version: "1.1.0", size: server.packageBytes.length, mandatory: false, notes: "<p>Faster</p>" }
  );
  const asked = server.requests[0];
  assert.equal(asked.url, "/v1/updates/cep/stable");
  assert.equal(asked.headers["x-panel-version"], "1.0.0");
  assert.equal(asked.headers["x-panel-product"], "cep");
});

const refusals = {
  "one flipped byte": (server, key) => {
    const good = signed(manifest(server), [key]);
    const body = Buffer.from(good.body);
    body[body.indexOf("1.1.0") + 2] ^= 0x01; // "1.1.0" -> "1.0.0"... any single bit
    return { body, header: good.header };
  },
  "a signature from another key": (server) => signed(manifest(server), [keyPair()]),
  "another key's signature under our key id": (server, key) => {
    const other = keyPair();
    return signed(manifest(server), [{ ...other, kid: key.kid }]);
  },
  "an expired manifest": (server, key) =>
    signed(manifest(server, { expires_at: new Date(Date.now() - 11 * 60 * 1000).toISOString() }), [key]),
  "the wrong product": (server, key) => signed(manifest(server, { product: "uxp" }), [key]),
  "the wrong channel": (server, key) => signed(manifest(server, { channel: "beta" }), [key]),
  "no signature at all": (server) => ({ body: Buffer.from(canonical(manifest(server))), header: "" }),
};

for (const [name, make] of Object.entries(refusals)) {
  test(`refused and nothing installed: ${name}`, async (t) => {
    const server = await updateServer();
    const dirs = machine();
    const upia = fakeUpia(dirs.root, SUCCESS_LINE + "\n");
    t.after(async () => {
      await server.close();
      dirs.cleanup();
    });
    const key = keyPair();
    server.packageBytes = zxp("1.1.0");
    server.manifest = make(server, key);
    const before = listTree(path.dirname(dirs.extensions));
    const { result, installed } = await checkAndInstall(server, dirs, { publicKeys: [key], upiaPaths: [upia.exe] });
    assert.equal(result.offer, null);
    assert.equal(result.refused, true, result.reason);
    assert.equal(installed, null);
    assert.equal(upia.ran(), false, "the installer never ran");
    assert.deepEqual(listTree(path.dirname(dirs.extensions)), before);
    assert.equal(server.requests.filter((r) => r.url.startsWith("/downloads/")).length, 0, "nothing was downloaded");
  });
}

test("a serial lower than one already seen is refused (a replayed old manifest)", async (t) => {
  const server = await updateServer();
  t.after(server.close);
  const key = keyPair();
  const storage = new MemoryStorage();
  server.packageBytes = zxp("1.1.0");
  const opts = { baseUrl: server.base, product: "cep", installedVersion: "1.0.0", fetch, storage, publicKeys: [key] };
  server.manifest = signed(manifest(server, { serial: 12 }), [key]);
  assert.ok((await Updates.check(opts)).offer);
  server.manifest = signed(manifest(server, { serial: 12 }), [key]);
  assert.ok((await Updates.check(opts)).offer, "the same serial (re-signed) is fine");
  server.manifest = signed(manifest(server, { serial: 11 }), [key]);
  const result = await Updates.check(opts);
  assert.equal(result.offer, null);
  assert.equal(result.reason, "old_serial");
});

test("a manifest a little past its expiry is accepted within the clock-skew allowance", async (t) => {
  const server = await updateServer();
  t.after(server.close);
  const key = keyPair();
  server.packageBytes = zxp("1.1.0");
  server.manifest = signed(manifest(server, { expires_at: new Date(Date.now() - 60 * 1000).toISOString() }), [key]);
  const result = await Updates.check({ baseUrl: server.base, product: "cep", installedVersion: "1.0.0", fetch, storage: new MemoryStorage(), publicKeys: [key] });
  assert.ok(result.offer);
});

test("during a key rotation both pinned keys are accepted, alone or together", async (t) => {
  const server = await updateServer();
  t.after(server.close);
  const oldKey = keyPair();
  const newKey = keyPair();
  server.packageBytes = zxp("1.1.0");
  const check = (pinned) =>
    Updates.check({ baseUrl: server.base, product: "cep", installedVersion: "1.0.0", fetch, storage: new MemoryStorage(), publicKeys: pinned });
  server.manifest = signed(manifest(server), [oldKey, newKey]);
  assert.ok((await check([oldKey])).offer, "an old panel pins only the old key");
  assert.ok((await check([newKey])).offer, "a new panel pins only the new key");
  server.manifest = signed(manifest(server), [newKey]);
  assert.ok((await check([oldKey, newKey])).offer, "after the rotation the new key alone signs");
  assert.equal((await check([oldKey])).reason, "bad_signature", "a panel pinning only the retired key is refused");
});

test("the same bytes verify through Node's crypto, WebCrypto Ed25519 and the vendored TweetNaCl.js", async () => {
  const key = keyPair();
  const { body, header } = signed({ a: 1 }, [key]);
  const nacl = Updates.naclVerifier(require("../core/vendor/nacl.js"));
  // Chromium before Ed25519 reached WebCrypto (CEP's): the import fails, the fallback verifies.
  const oldChromium = {
    importKey: () => Promise.reject(Object.assign(new Error("Unrecognized name"), { name: "NotSupportedError" })),
  };
  const verifiers = {
    node: Updates.nodeVerifier(crypto),
    webcrypto: Updates.webCryptoVerifier(crypto.webcrypto.subtle),
    nacl,
    "webcrypto without Ed25519": Updates.webCryptoVerifier(oldChromium, nacl),
  };
  assert.equal(await Updates.verifyManifest(new Uint8Array(body), header, [key], Updates.webCryptoVerifier(oldChromium)), false,
    "without a fallback, no verification means refusal");
  for (const verify of Object.values(verifiers)) {
    assert.equal(await Updates.verifyManifest(new Uint8Array(body), header, [key], verify), true);
    const flipped = Buffer.from(body);
    flipped[0] ^= 1;
    assert.equal(await Updates.verifyManifest(new Uint8Array(flipped), header, [key], verify), false);
  }
});

test("no offer when the installed version is current or the host is too old", async (t) => {
  const server = await updateServer();
  t.after(server.close);
  const key = keyPair();
  server.packageBytes = zxp("1.1.0");
  server.manifest = signed(manifest(server, {}, { min_host_version: "26.0" }), [key]);
  const base = { baseUrl: server.base, product: "cep", fetch, publicKeys: [key] };
  assert.equal((await Updates.check({ ...base, installedVersion: "1.1.0", storage: new MemoryStorage() })).reason, "up_to_date");
  assert.equal((await Updates.check({ ...base, installedVersion: "1.2.0", storage: new MemoryStorage() })).reason, "up_to_date");
  assert.equal((await Updates.check({ ...base, installedVersion: "1.0.0", storage: new MemoryStorage(), hostVersion: "25.6" })).reason, "host_too_old");
  assert.ok((await Updates.check({ ...base, installedVersion: "1.1.0-beta.2", storage: new MemoryStorage(), hostVersion: "26.0" })).offer);
});

// --- staged rollout ------------------------------------------------------------------------------------------

test("over 10,000 random installs the share offered is the rollout percent within 2 points", () => {
  for (const percent of [1, 10, 30, 75]) {
    const salt = crypto.randomBytes(8).toString("hex");
    let offered = 0;
    for (let i = 0; i < 10000; i++) {
      if (Updates.rolloutBucket(crypto.randomBytes(16).toString("hex"), salt) < percent) offered++;
    }
    const share = offered / 100;
    assert.ok(Math.abs(share - percent) <= 2, `${percent}%: ${share}% offered`);
  }
});

test("an install keeps its bucket; outside the rollout no offer, unless the update is mandatory", async (t) => {
  const server = await updateServer();
  t.after(server.close);
  const key = keyPair();
  server.packageBytes = zxp("1.1.0");
  const storage = new MemoryStorage();
  storage.setItem("sfx.updates.installId", "install-a");
  const bucket = Updates.rolloutBucket("install-a", "s4lt");
  assert.equal(bucket, Updates.rolloutBucket("install-a", "s4lt"), "stable");
  const opts = { baseUrl: server.base, product: "cep", installedVersion: "1.0.0", fetch, storage, publicKeys: [key] };

  server.manifest = signed(manifest(server, {}, { rollout: { percent: bucket, salt: "s4lt" } }), [key]);
  assert.equal((await Updates.check(opts)).reason, "not_in_rollout");
  server.manifest = signed(manifest(server, {}, { rollout: { percent: bucket + 1, salt: "s4lt" } }), [key]);
  assert.ok((await Updates.check(opts)).offer);

  server.manifest = signed(manifest(server, { min_supported_version: "1.1.0" }, { rollout: { percent: 0, salt: "s4lt" } }), [key]);
  const forced = await Updates.check(opts);
  assert.equal(forced.offer.mandatory, true, "below min_supported the update is offered to everyone, as mandatory");
});

test("a fresh install gets a random id, kept in its storage", async (t) => {
  const server = await updateServer();
  t.after(server.close);
  const key = keyPair();
  server.packageBytes = zxp("1.1.0");
  server.manifest = signed(manifest(server, {}, { rollout: { percent: 50, salt: "x" } }), [key]);
  const storage = new MemoryStorage();
  await Updates.check({ baseUrl: server.base, product: "cep", installedVersion: "1.0.0", fetch, storage, publicKeys: [key] });
  const id = storage.getItem("sfx.updates.installId");
  assert.match(id, /^[0-9a-f]{32}$/);
  await Updates.check({ baseUrl: server.base, product: "cep", installedVersion: "1.0.0", fetch, storage, publicKeys: [key] });
  assert.equal(storage.getItem("sfx.updates.installId"), id);
});

// --- installing --------------------------------------------------------------------------------------------------

async function offeredServer(t, packageBytes, latest = {}) {
  const server = await updateServer();
  const dirs = machine();
  t.after(async () => {
    await server.close();
    dirs.cleanup();
  });
  const key = keyPair();
  server.packageBytes = packageBytes;
  server.manifest = signed(manifest(server, {}, latest), [key]);
  return { server, dirs, key };
}

for (const [name, latest, bytes, code] of [
  ["a package whose SHA-256 differs", { sha256: "0".repeat(64) }, null, "checksum_mismatch"],
  ["a package larger than the manifest says", { size: 100 }, null, "size_mismatch"],
  ["a package smaller than the manifest says", {}, Buffer.from("short"), "size_mismatch"],
]) {
  test(`refused and nothing installed: ${name}`, async (t) => {
    const good = zxp("1.1.0");
    const { server, dirs, key } = await offeredServer(t, good, latest);
    if (bytes) server.packageBytes = bytes; // served bytes differ from what the manifest was signed over
    const upia = fakeUpia(dirs.root, SUCCESS_LINE);
    const before = listTree(path.dirname(dirs.extensions));
    await assert.rejects(checkAndInstall(server, dirs, { publicKeys: [key], upiaPaths: [upia.exe] }), (e) => e.code === code);
    assert.equal(upia.ran(), false);
    assert.deepEqual(listTree(path.dirname(dirs.extensions)), before, "extensions untouched");
    assert.deepEqual(fs.readdirSync(dirs.tmp), [], "the temporary download is gone");
  });
}

test("with UPIA present it installs the checked file with --install and reports progress", async (t) => {
  const { server, dirs, key } = await offeredServer(t, zxp("1.1.0"));
  const upia = fakeUpia(dirs.root, "Preparing...\nInstallation Successful\n");
  const progress = [];
  const { installed } = await checkAndInstall(server, dirs, {
    publicKeys: [key], upiaPaths: [upia.exe], onProgress: (fraction, received, total) => progress.push([fraction, received, total]),
  });
  assert.deepEqual(installed, { method: "upia", restartRequired: true });
  const [flag, file] = upia.args();
  assert.equal(flag, "--install");
  assert.equal(path.dirname(file), dirs.tmp);
  assert.deepEqual(progress.at(-1), [1, server.packageBytes.length, server.packageBytes.length]);
  assert.ok(progress.every(([fraction], i) => fraction > 0 && fraction <= 1 && (i === 0 || fraction >= progress[i - 1][0])));
  assert.deepEqual(fs.readdirSync(dirs.tmp), [], "the downloaded file is removed afterwards");
});

test("UPIA without its success line is a failure and the installed version stays", async (t) => {
  const { server, dirs, key } = await offeredServer(t, zxp("1.1.0"));
  const upia = fakeUpia(dirs.root, "Error: the extension could not be installed (-402)\n", 1);
  await assert.rejects(checkAndInstall(server, dirs, { publicKeys: [key], upiaPaths: [upia.exe] }), (e) => e.code === "upia_failed" && /-402/.test(e.message));
  assert.ok(upia.ran());
  assert.match(fs.readFileSync(path.join(dirs.current, "CSXS", "manifest.xml"), "utf8"), /1\.0\.0/);
  assert.equal(fs.existsSync(path.join(path.dirname(dirs.extensions), "sfx-studio-updates")), false, "no fallback staging after a UPIA failure");
});

test("UPIA's paths are the ones Adobe documents, Windows uses /install", () => {
  assert.deepEqual(upiaCandidates("darwin", {}), [
    "/Library/Application Support/Adobe/Adobe Desktop Common/RemoteComponents/UPI/UnifiedPluginInstallerAgent/UnifiedPluginInstallerAgent.app/Contents/MacOS/UnifiedPluginInstallerAgent",
  ]);
  assert.deepEqual(upiaCandidates("win32", { CommonProgramFiles: "C:\\Program Files\\Common Files", "CommonProgramFiles(x86)": "C:\\Program Files (x86)\\Common Files" }), [
    "C:\\Program Files\\Common Files\\Adobe\\Adobe Desktop Common\\RemoteComponents\\UPI\\UnifiedPluginInstallerAgent\\UnifiedPluginInstallerAgent.exe",
    "C:\\Program Files (x86)\\Common Files\\Adobe\\Adobe Desktop Common\\RemoteComponents\\UPI\\UnifiedPluginInstallerAgent\\UnifiedPluginInstallerAgent.exe",
  ]);
});

test("without an installer (a UXP host) install refuses and points at the download", async () => {
  await assert.rejects(Updates.install({ url: "https://x/downloads/uxp/1.1.0", size: 1, sha256: "a".repeat(64) }, {}),
    (e) => e.code === "no_installer" && /downloads\/uxp\/1\.1\.0/.test(e.message));
});

test("a fake Windows UPIA gets /install", async (t) => {
  const { server, dirs, key } = await offeredServer(t, zxp("1.1.0"));
  const upia = fakeUpia(dirs.root, SUCCESS_LINE);
  const result = await Updates.check({ baseUrl: server.base, product: "cep", installedVersion: "1.0.0", fetch, storage: new MemoryStorage(), publicKeys: [key] });
  const installer = createInstaller({ platform: "win32", env: {}, extensionsDir: dirs.extensions, tmpDir: dirs.tmp, upiaPaths: [upia.exe] });
  await Updates.install(result.offer, { installer });
  assert.equal(upia.args()[0], "/install");
});

test("without UPIA the package is staged, swapped in at the next start, and the old version kept for rollback", async (t) => {
  const { server, dirs, key } = await offeredServer(t, zxp("1.1.0"));
  const { installed } = await checkAndInstall(server, dirs, { publicKeys: [key], upiaPaths: [path.join(dirs.root, "missing", "UnifiedPluginInstallerAgent")] });
  assert.equal(installed.method, "staged");
  assert.match(fs.readFileSync(path.join(dirs.current, "CSXS", "manifest.xml"), "utf8"), /"1\.0\.0"/, "the running version is untouched until the next start");
  assert.equal(path.dirname(installed.staged), path.join(path.dirname(dirs.extensions), "sfx-studio-updates"), "staged outside the folder CEP scans");

  const installer = createInstaller({ platform: "darwin", extensionsDir: dirs.extensions, tmpDir: dirs.tmp, upiaPaths: [] });
  assert.deepEqual(installer.applyPending(), { swapped: true, version: "1.1.0" });
  assert.match(fs.readFileSync(path.join(dirs.current, "CSXS", "manifest.xml"), "utf8"), /"1\.1\.0"/);
  assert.equal(fs.readFileSync(path.join(dirs.current, "index.html"), "utf8"), "<!doctype html><title>SFX Studio 1.1.0</title>");
  assert.deepEqual(installer.applyPending(), { swapped: false, reason: "nothing_pending" });

  assert.deepEqual(installer.rollback(), { rolledBack: true, version: "1.0.0" });
  assert.match(fs.readFileSync(path.join(dirs.current, "CSXS", "manifest.xml"), "utf8"), /"1\.0\.0"/);
});

test("staging refuses a package that is not our extension at the offered version, or escapes its folder", async (t) => {
  for (const bytes of [zxp("1.1.0", "com.someone.else"), zxp("1.0.9"), zip({ ...panelFiles("1.1.0"), "../../evil.txt": "x" })]) {
    const { server, dirs, key } = await offeredServer(t, bytes);
    await assert.rejects(checkAndInstall(server, dirs, { publicKeys: [key] }), (e) => e.code === "bad_package");
    const updatesDir = path.join(path.dirname(dirs.extensions), "sfx-studio-updates");
    assert.deepEqual(listTree(updatesDir), [], "nothing staged, nothing pending");
    assert.equal(fs.existsSync(path.join(dirs.root, "evil.txt")), false);
    assert.equal(fs.existsSync(path.join(path.dirname(dirs.extensions), "evil.txt")), false);
  }
});

test("a developer's linked panel folder is never swapped", async (t) => {
  const { server, dirs, key } = await offeredServer(t, zxp("1.1.0"));
  await checkAndInstall(server, dirs, { publicKeys: [key] });
  const checkout = path.join(dirs.root, "checkout");
  fs.renameSync(dirs.current, checkout);
  fs.symlinkSync(checkout, dirs.current, "dir");
  const installer = createInstaller({ platform: "darwin", extensionsDir: dirs.extensions, tmpDir: dirs.tmp, upiaPaths: [] });
  assert.deepEqual(installer.applyPending(), { swapped: false, reason: "dev_link" });
  assert.ok(fs.lstatSync(dirs.current).isSymbolicLink());
});
