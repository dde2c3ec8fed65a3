/*
 * The editor's settings with their defaults, read from and written to the storage adapter.
 */
(function (factory) {
  var api = factory();
  if (typeof window !== "undefined" && window.document) {
    (window.SFX = window.SFX || {}).Settings = api;
  } else {
    module.exports = api;
  }
})(function () {
  "use strict";

  var KEY = "settings";
  var DEFAULTS = { serverUrl: "http://127.0.0.1:8080", folder: "", bin: "AI SFX", track: "auto", bitDepth: 16 };

  /** A live settings object: read fields directly, call save() after changing them. */
  function load(store, defaults) {
    var settings = Object.assign({}, DEFAULTS, defaults || {}, store.get(KEY) || {});
    Object.defineProperty(settings, "save", {
      enumerable: false,
      value: function () {
        var plain = {};
        for (var k in settings) plain[k] = settings[k];
        return store.set(KEY, plain);
      },
    });
    return settings;
  }

  function origin(url) {
    var m = /^(https?:\/\/[^\/?#]+)/i.exec(String(url || ""));
    return m ? m[1].toLowerCase() : "";
  }

  return { load: load, DEFAULTS: DEFAULTS, origin: origin };
});
