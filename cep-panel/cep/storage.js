/*
 * CEP's storage backend: one JSON document in the user's data folder (CEP's "userData" system path,
 * e.g. ~/Library/Application Support or %APPDATA%), under "SFX Studio". Not localStorage: CEP keys
 * that by host version, so a Premiere update would sign the editor out and lose settings. A panel
 * that used localStorage before moves its keys into the file once.
 */
(function () {
  "use strict";
  var SFX = (window.SFX = window.SFX || {});
  var FILE = "panel.json";
  var LEGACY = { tokens: "sfx.tokens", settings: "sfx.settings", local: "sfx.local" };

  function legacyDoc(storage) {
    var doc = null;
    if (!storage) return null;
    for (var key in LEGACY) {
      try {
        var raw = storage.getItem(LEGACY[key]);
        if (raw) (doc = doc || {})[key] = JSON.parse(raw);
      } catch (e) {
        /* an unreadable old value is simply dropped */
      }
    }
    return doc;
  }

  /**
   * @param {{fs: any, path: any}} node Node's modules
   * @param {string} dataFolder CEP's userData folder
   * @param {Storage} [legacy] window.localStorage, read once for the move
   */
  function backend(node, dataFolder, legacy) {
    var dir = node.path.join(dataFolder, "SFX Studio");
    var file = node.path.join(dir, FILE);
    var migrated = null;
    return {
      file: file,
      read: function () {
        return node.fs.promises.readFile(file).then(
          function (bytes) {
            return JSON.parse(new TextDecoder().decode(bytes));
          },
          function (error) {
            if (error && error.code !== "ENOENT") throw error;
            migrated = legacyDoc(legacy);
            return migrated;
          }
        );
      },
      /** Written to a temporary name and renamed over the file, so a crash never leaves half a file. */
      write: function (doc) {
        var tmp = file + ".tmp";
        return node.fs.promises
          .mkdir(dir, { recursive: true })
          .then(function () {
            return node.fs.promises.writeFile(tmp, JSON.stringify(doc));
          })
          .then(function () {
            return node.fs.promises.rename(tmp, file);
          })
          .then(function () {
            if (migrated && legacy) {
              for (var key in LEGACY) legacy.removeItem(LEGACY[key]);
              migrated = null;
            }
          });
      },
    };
  }

  SFX.CepStorage = { backend: backend, FILE: FILE, LEGACY: LEGACY };
})();
