/*
 * The public keys that sign update manifests, pinned into the panel: core/updates.js accepts a manifest
 * only when one of these verifies its signature. `python -m server releases keygen` prints a pair;
 * list the production key here for release builds (two during a rotation: old and new). Dev builds
 * published by ./scripts/dev get the dev server's keys written into their copy of this file.
 */
(function (keys) {
  if (typeof window !== "undefined" && window.document) {
    (window.SFX = window.SFX || {}).UpdateKeys = keys;
  } else {
    module.exports = keys;
  }
})([
  // { kid: "16 hex digits", key: "base64 of the 32-byte Ed25519 public key" },
]);
