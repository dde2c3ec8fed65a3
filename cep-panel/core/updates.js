/*
 * Panel updates: read the server's signed update manifest and decide whether to offer an update;
 * install an accepted offer through the host's installer (cep/installer.js in CEP).
 *
 * The manifest's signature (Ed25519, `X-Update-Signatures: kid:base64sig[,kid:sig]`) is checked over
 * the exact bytes received, against public keys pinned in the panel, BEFORE the bytes are parsed.
 * Then: product and channel must be ours, the serial no lower than the highest seen (persisted), the
 * manifest not expired, the version newer than the installed one, and this install inside the
 * staged rollout. Anything else is refused, and nothing is downloaded or installed.
 *
 * Runs unchanged in CEP (Node's crypto), a browser (WebCrypto Ed25519), runtimes with neither
 * (the vendored TweetNaCl.js, core/vendor/nacl.js, loaded before this file) and Node tests: fetch,
 * storage, clock and the verifier are injected.
 */
(function (factory) {
  var updates = factory();
  if (typeof window !== "undefined" && window.document) {
    (window.SFX = window.SFX || {}).Updates = updates;
  } else {
    module.exports = updates;
  }
})(function () {
  "use strict";

  var SIGNATURE_HEADER = "X-Update-Signatures";
  // Clocks on editors' machines drift; a manifest is still accepted this long after its expiry.
  var DEFAULT_SKEW_MS = 10 * 60 * 1000;
  var INSTALL_ID_KEY = "sfx.updates.installId";
  var SERIAL_KEY = "sfx.updates.serial:";
  // DER prefix of an Ed25519 SubjectPublicKeyInfo: the 32 raw key bytes follow it.
  var SPKI_PREFIX = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

  /** A refusal or failure the UI can name; `code` is stable, `message` is for people. */
  function UpdateError(code, message) {
    this.name = "UpdateError";
    this.code = code;
    this.message = message;
  }
  UpdateError.prototype = Object.create(Error.prototype);
  UpdateError.prototype.constructor = UpdateError;

  // --- versions (semver ordering, prereleases before their release) -----------------------------

  var SEMVER = /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z.-]+))?$/;

  function parseVersion(text) {
    var m = SEMVER.exec(String(text || "").trim());
    if (!m) return null;
    return { core: [Number(m[1]), Number(m[2]), Number(m[3])], pre: m[4] ? m[4].split(".") : [] };
  }

  /** -1, 0 or 1; throws on something that is not a version. */
  function compareVersions(a, b) {
    var x = parseVersion(a);
    var y = parseVersion(b);
    if (!x || !y) throw new UpdateError("bad_version", "Not a version: " + (!x ? a : b));
    for (var i = 0; i < 3; i++) {
      if (x.core[i] !== y.core[i]) return x.core[i] < y.core[i] ? -1 : 1;
    }
    if (!x.pre.length || !y.pre.length) return x.pre.length === y.pre.length ? 0 : x.pre.length ? -1 : 1;
    for (var j = 0; j < Math.max(x.pre.length, y.pre.length); j++) {
      if (j >= x.pre.length) return -1;
      if (j >= y.pre.length) return 1;
      var p = x.pre[j];
      var q = y.pre[j];
      var pn = /^\d+$/.test(p);
      var qn = /^\d+$/.test(q);
      if (pn && qn && Number(p) !== Number(q)) return Number(p) < Number(q) ? -1 : 1;
      if (pn !== qn) return pn ? -1 : 1;
      if (!pn && p !== q) return p < q ? -1 : 1;
    }
    return 0;
  }

  /** Premiere versions ("23.0", "25.6.1"): numeric parts, missing ones count as 0. */
  function compareHostVersions(a, b) {
    var x = String(a).split(".").map(Number);
    var y = String(b).split(".").map(Number);
    for (var i = 0; i < Math.max(x.length, y.length); i++) {
      var p = x[i] || 0;
      var q = y[i] || 0;
      if (p !== q) return p < q ? -1 : 1;
    }
    return 0;
  }

  // --- bytes ----------------------------------------------------------------------------------

  function base64ToBytes(text) {
    if (typeof Buffer !== "undefined") return new Uint8Array(Buffer.from(text, "base64"));
    var raw = atob(text);
    var out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
    return out;
  }

  function utf8Decode(bytes) {
    if (typeof TextDecoder !== "undefined") return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    return Buffer.from(bytes).toString("utf8");
  }

  function utf8Encode(text) {
    if (typeof TextEncoder !== "undefined") return new TextEncoder().encode(text);
    return new Uint8Array(Buffer.from(text, "utf8"));
  }

  // --- Ed25519 verification ------------------------------------------------------------------------

  function nodeCrypto() {
    try {
      // CEP with --enable-nodejs (and Node tests); a plain browser has no require.
      return typeof require === "function" ? require("crypto") : null;
    } catch (e) {
      return null;
    }
  }

  /** Ed25519 through Node's crypto (CEP with --enable-nodejs; Node 12+). Resolves true or false. */
  function nodeVerifier(node) {
    return function (publicKey, data, signature) {
      try {
        // From the raw key through SPKI DER: JWK import needs Node 15.12, CEP 11 ships 15.9.
        var spki = Buffer.concat([Buffer.from(SPKI_PREFIX), Buffer.from(publicKey)]);
        var key = node.createPublicKey({ key: spki, format: "der", type: "spki" });
        return Promise.resolve(node.verify(null, Buffer.from(data), key, Buffer.from(signature)));
      } catch (e) {
        return Promise.resolve(false);
      }
    };
  }

  /** Ed25519 through the vendored TweetNaCl.js (core/vendor/nacl.js): any JavaScript runtime. */
  function naclVerifier(nacl) {
    return function (publicKey, data, signature) {
      try {
        return Promise.resolve(nacl.sign.detached.verify(new Uint8Array(data), new Uint8Array(signature), new Uint8Array(publicKey)));
      } catch (e) {
        return Promise.resolve(false);
      }
    };
  }

  /**
   * Ed25519 through WebCrypto (current Chromium and Node). Where WebCrypto has no Ed25519 (older
   * Chromium) the key import fails: then `fallback` verifies, or the answer is false.
   */
  function webCryptoVerifier(subtle, fallback) {
    return function (publicKey, data, signature) {
      return subtle.importKey("raw", publicKey, { name: "Ed25519" }, false, ["verify"]).then(
        function (key) {
          return subtle.verify({ name: "Ed25519" }, key, signature, data).catch(function () {
            return false;
          });
        },
        function () {
          return fallback ? fallback(publicKey, data, signature) : false;
        }
      );
    };
  }

  function vendoredNacl() {
    if (typeof window !== "undefined" && window.nacl && window.nacl.sign) return window.nacl;
    try {
      return typeof require === "function" ? require("./vendor/nacl.js") : null;
    } catch (e) {
      return null;
    }
  }

  /**
   * The best verifier this runtime has: Node's crypto first (CEP's Chromium lacks Ed25519 in
   * WebCrypto, but its Node has it), else WebCrypto, else the vendored TweetNaCl.js. Null when
   * there is none (the page did not load core/vendor/nacl.js).
   */
  function defaultVerifier() {
    var node = nodeCrypto();
    if (node && typeof node.verify === "function" && typeof node.createPublicKey === "function") return nodeVerifier(node);
    var nacl = vendoredNacl();
    var fallback = nacl ? naclVerifier(nacl) : null;
    var subtle = typeof crypto !== "undefined" && crypto.subtle;
    return subtle ? webCryptoVerifier(subtle, fallback) : fallback;
  }

  function parseSignatures(header) {
    var out = [];
    String(header || "")
      .split(",")
      .forEach(function (item) {
        var at = item.indexOf(":");
        if (at > 0) out.push({ kid: item.slice(0, at).trim(), signature: item.slice(at + 1).trim() });
      });
    return out;
  }

  /** True when a signature by one of the pinned keys (matched by key id) verifies over `bytes`. */
  function verifyManifest(bytes, header, pinnedKeys, verifier) {
    var byKid = {};
    (pinnedKeys || []).forEach(function (k) {
      byKid[k.kid] = k.key;
    });
    var candidates = parseSignatures(header).filter(function (s) {
      return Object.prototype.hasOwnProperty.call(byKid, s.kid);
    });
    var attempt = function (i) {
      if (i >= candidates.length) return Promise.resolve(false);
      var publicKey;
      var signature;
      try {
        publicKey = base64ToBytes(byKid[candidates[i].kid]);
        signature = base64ToBytes(candidates[i].signature);
      } catch (e) {
        return attempt(i + 1);
      }
      if (publicKey.length !== 32 || signature.length !== 64) return attempt(i + 1);
      return verifier(publicKey, bytes, signature).then(function (ok) {
        return ok ? true : attempt(i + 1);
      });
    };
    return attempt(0);
  }

  // --- staged rollout ----------------------------------------------------------------------------

  /** A stable bucket 0-99 for an install and a release's salt (FNV-1a, then a 32-bit avalanche). */
  function rolloutBucket(installId, salt) {
    var bytes = utf8Encode(String(installId) + ":" + String(salt));
    var h = 0x811c9dc5;
    for (var i = 0; i < bytes.length; i++) {
      h ^= bytes[i];
      h = Math.imul(h, 0x01000193);
    }
    h ^= h >>> 16;
    h = Math.imul(h, 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
    return (h >>> 0) % 100;
  }

  function randomId() {
    var bytes = new Uint8Array(16);
    var node = nodeCrypto();
    if (node && node.randomBytes) bytes = new Uint8Array(node.randomBytes(16));
    else crypto.getRandomValues(bytes);
    return Array.prototype.map
      .call(bytes, function (b) {
        return (b < 16 ? "0" : "") + b.toString(16);
      })
      .join("");
  }

  function installId(storage) {
    var id = storage.getItem(INSTALL_ID_KEY);
    if (!id) {
      id = randomId();
      storage.setItem(INSTALL_ID_KEY, id);
    }
    return id;
  }

  // --- checking ------------------------------------------------------------------------------------

  function refuse(code, message) {
    return { offer: null, refused: true, reason: code, message: message };
  }

  function none(reason, manifest) {
    return { offer: null, refused: false, reason: reason, manifest: manifest };
  }

  /**
   * Ask the server whether this install should update.
   * @param {{baseUrl: string, product: string, channel?: string, installedVersion: string,
   *          publicKeys: {kid: string, key: string}[], fetch: Function, storage: Storage,
   *          now?: () => number, skewMs?: number, hostVersion?: string, verify?: Function}} opts
   * @returns {Promise<{offer: object|null, refused: boolean, reason?: string, manifest?: object}>}
   */
  function check(opts) {
    var channel = opts.channel || "stable";
    var now = (opts.now || Date.now)();
    var skew = opts.skewMs === undefined ? DEFAULT_SKEW_MS : opts.skewMs;
    var verifier = opts.verify || defaultVerifier();
    if (!verifier) return Promise.resolve(refuse("no_verifier", "This runtime cannot verify Ed25519 signatures"));
    if (!opts.publicKeys || !opts.publicKeys.length) return Promise.resolve(refuse("no_keys", "No update keys are pinned"));
    var url = String(opts.baseUrl).replace(/\/+$/, "") + "/v1/updates/" + encodeURIComponent(opts.product) + "/" + encodeURIComponent(channel);
    var headers = { "X-Panel-Version": opts.installedVersion, "X-Panel-Product": opts.product };
    var signatureHeader;

    return opts
      // Revalidate (ETag) rather than trust a cached copy: a new mandatory release must reach panels.
      .fetch(url, { headers: headers, cache: "no-cache" })
      .then(function (resp) {
        if (!resp.ok) throw new UpdateError("http_" + resp.status, "The update server answered " + resp.status);
        signatureHeader = resp.headers.get(SIGNATURE_HEADER);
        return resp.arrayBuffer();
      })
      .then(function (buffer) {
        var bytes = new Uint8Array(buffer);
        return verifyManifest(bytes, signatureHeader, opts.publicKeys, verifier).then(function (ok) {
          if (!ok) return refuse("bad_signature", "The update manifest is not signed by a pinned key");
          var manifest;
          try {
            manifest = JSON.parse(utf8Decode(bytes));
          } catch (e) {
            return refuse("bad_manifest", "The signed manifest is not JSON");
          }
          return evaluate(manifest, opts, channel, now, skew);
        });
      });
  }

  function evaluate(manifest, opts, channel, now, skew) {
    if (!manifest || typeof manifest !== "object") return refuse("bad_manifest", "The manifest is not an object");
    if (manifest.product !== opts.product || manifest.channel !== channel) {
      return refuse("wrong_manifest", "The manifest is for " + manifest.product + "/" + manifest.channel);
    }
    var serial = Number(manifest.serial);
    var key = SERIAL_KEY + opts.product + ":" + channel;
    var highest = Number(opts.storage.getItem(key) || 0);
    if (!isFinite(serial) || serial < highest) {
      return refuse("old_serial", "The manifest (serial " + manifest.serial + ") is older than one already seen (" + highest + ")");
    }
    var expires = Date.parse(manifest.expires_at);
    if (!isFinite(expires) || expires + skew < now) return refuse("expired", "The update manifest has expired");
    opts.storage.setItem(key, String(serial));

    var latest = manifest.latest;
    var installed = opts.installedVersion;
    var mandatory = false;
    if (manifest.min_supported_version) {
      mandatory = compareVersions(installed, manifest.min_supported_version) < 0;
    }
    if (!latest) return none("no_release", manifest);
    if (!parseVersion(latest.version) || compareVersions(latest.version, installed) <= 0) return none("up_to_date", manifest);
    if (latest.min_host_version && opts.hostVersion && compareHostVersions(opts.hostVersion, latest.min_host_version) < 0) {
      return none("host_too_old", manifest);
    }
    var rollout = latest.rollout || { percent: 100, salt: "" };
    if (!mandatory && rolloutBucket(installId(opts.storage), rollout.salt) >= Number(rollout.percent)) {
      return none("not_in_rollout", manifest);
    }
    return {
      offer: {
        version: latest.version,
        notes_html: latest.notes_html || "",
        size: Number(latest.size),
        url: latest.url,
        sha256: String(latest.sha256).toLowerCase(),
        mandatory: mandatory,
        min_supported_version: manifest.min_supported_version || null,
        dev_build: !!latest.dev_build,
      },
      refused: false,
      manifest: manifest,
    };
  }

  // --- installing -----------------------------------------------------------------------------------

  /**
   * Download, check and install an offer through the host's installer, which provides
   * `download(url, {maxBytes, onProgress})` -> {path, size, sha256}, `install(path, offer)` -> result
   * and `discard(path)`. The size is a hard cap and must match exactly, as must the SHA-256; on any
   * mismatch the file is discarded and nothing is installed.
   * @param {object} offer from check()
   * @param {{installer: object, onProgress?: (fraction: number, received: number, total: number) => void}} opts
   */
  function install(offer, opts) {
    var installer = opts.installer;
    if (!installer) {
      // A UXP plugin cannot replace itself: Creative Cloud installs the .ccx from the download page.
      return Promise.reject(new UpdateError("no_installer", "Download " + ((offer && offer.url) || "the update") + " and open it to install."));
    }
    if (!offer || !(offer.size > 0) || !/^[0-9a-f]{64}$/.test(offer.sha256 || "")) {
      return Promise.reject(new UpdateError("bad_offer", "The offer has no valid size or checksum"));
    }
    var onProgress = opts.onProgress;
    var report = onProgress
      ? function (received, total) {
          onProgress(total ? Math.min(1, received / total) : 0, received, total);
        }
      : undefined;
    return installer
      .download(offer.url, { maxBytes: offer.size, onProgress: report })
      .then(function (file) {
        var problem = null;
        if (file.size !== offer.size) problem = new UpdateError("size_mismatch", "The download is " + file.size + " bytes, not " + offer.size);
        else if (String(file.sha256).toLowerCase() !== offer.sha256) problem = new UpdateError("checksum_mismatch", "The download's SHA-256 does not match the manifest");
        if (problem) {
          return Promise.resolve(installer.discard(file.path)).then(function () {
            throw problem;
          });
        }
        var cleanup = function () {
          return Promise.resolve(installer.discard(file.path));
        };
        return installer.install(file.path, offer).then(
          function (result) {
            return cleanup().then(function () {
              return result;
            });
          },
          function (error) {
            return cleanup().then(function () {
              throw error;
            });
          }
        );
      });
  }

  return {
    check: check,
    install: install,
    UpdateError: UpdateError,
    compareVersions: compareVersions,
    rolloutBucket: rolloutBucket,
    verifyManifest: verifyManifest,
    defaultVerifier: defaultVerifier,
    nodeVerifier: nodeVerifier,
    webCryptoVerifier: webCryptoVerifier,
    naclVerifier: naclVerifier,
    SIGNATURE_HEADER: SIGNATURE_HEADER,
  };
});
