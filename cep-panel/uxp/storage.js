/*
 * UXP's storage backends: the sign-in tokens in secureStorage (encrypted per user by UXP), settings
 * and the history map in a JSON file in the plugin's data folder (plugin-data:), which survives
 * Premiere and plugin updates.
 */
(function () {
  "use strict";
  var SFX = (window.SFX = window.SFX || {});
  var FILE = "plugin-data:/panel.json";
  var SECRET_KEY = "sfx.tokens";

  function plain(fs) {
    return {
      read: function () {
        return Promise.resolve(fs.readFile(FILE, { encoding: "utf-8" })).then(
          function (text) {
            return JSON.parse(text);
          },
          function () {
            return null; // no file yet
          }
        );
      },
      write: function (doc) {
        return Promise.resolve(fs.writeFile(FILE, JSON.stringify(doc), { encoding: "utf-8" }));
      },
    };
  }

  function secret(secureStorage) {
    return {
      read: function () {
        return Promise.resolve(secureStorage.getItem(SECRET_KEY)).then(function (value) {
          if (!value) return null;
          return JSON.parse(typeof value === "string" ? value : new TextDecoder().decode(value));
        });
      },
      write: function (doc) {
        if (!doc || !Object.keys(doc).length) return Promise.resolve(secureStorage.removeItem(SECRET_KEY));
        return Promise.resolve(secureStorage.setItem(SECRET_KEY, JSON.stringify(doc)));
      },
    };
  }

  SFX.UxpStorage = { plain: plain, secret: secret, FILE: FILE, SECRET_KEY: SECRET_KEY };
})();
