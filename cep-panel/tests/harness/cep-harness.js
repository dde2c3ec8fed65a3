/*
 * Test harness: the CEP environment around the panel in a plain Chromium page, injected before the
 * panel's own scripts (Playwright add_init_script). It provides what Premiere would:
 *   - window.__adobe_cep__   the native bridge under CSInterface: evalScript (recorded; answers the
 *                            host's JSON envelopes), host environment with appSkinInfo, theme events
 *   - window.cep.util        openURLInDefaultBrowser (recorded)
 *   - window.require         Node-like "fs" (promises API), "path" and "os"; fs is backed by an exposed
 *                            test function (window.__sfxFs) so files really land on disk
 *   - getSystemPath          userData and myDocuments inside the test's sandbox (config.documents may
 *                            point Documents elsewhere, as a OneDrive-redirected folder would be)
 * The panel code is not changed for tests. Configuration arrives as window.__SFX_HARNESS_CONFIG__.
 */
(function () {
  "use strict";
  var config = window.__SFX_HARNESS_CONFIG__ || {};

  var skin = {
    baseFontFamily: "",
    baseFontSize: config.fontSize || 11,
    panelBackgroundColor: { antialiasLevel: 0, type: 1, color: config.background || { red: 35, green: 35, blue: 35, alpha: 255 } },
  };
  var listeners = {};

  var harness = {
    calls: [],
    opened: [],
    replies: {},
    keyInterest: null,
    context: config.context || {
      project: { name: "Film.prproj", path: (config.home || "/tmp") + "/Projects/Film/Film.prproj" },
      sequence: { id: "seq-1", name: "Main edit", playhead: 12.5, frameRate: 25, duration: 120, audioTracks: [{ index: 0, name: "A1", locked: false, clips: 1 }, { index: 1, name: "A2", locked: false, clips: 0 }] },
    },
    markers: config.markers || [],
    /** What the host answers for a call: a test may set replies[name] to an envelope or a function. */
    reply: function (name, args) {
      var custom = harness.replies[name];
      if (typeof custom === "function") return custom(args);
      if (custom) return custom;
      switch (name) {
        case "ping":
          return { ok: true, result: { version: "test", app: "24.6.0" } };
        case "getContext":
          return { ok: true, result: harness.context };
        case "importAndPlace":
          return { ok: true, result: { placed: true, track: 1, trackName: "A2", time: args.time === undefined ? harness.context.sequence.playhead : args.time, bin: args.bin || "AI SFX", item: basename(args.path), sequence: "Main edit" } };
        case "importToBin":
          return { ok: true, result: { bin: args.bin || "AI SFX", binCreated: false, item: basename(args.path), imported: true } };
        case "getMarkers":
          return { ok: true, result: { sequence: "Main edit", markers: harness.markers } };
        case "revealFile":
          return { ok: true, result: { folder: dirname(args.path) } };
      }
      return { ok: false, error: { code: "unknown_call", message: "Unknown host call: " + name } };
    },
    setTheme: function (background, fontSize) {
      skin.panelBackgroundColor.color = background;
      if (fontSize) skin.baseFontSize = fontSize;
      var fns = listeners["com.adobe.csxs.events.ThemeColorChanged"] || [];
      fns.forEach(function (fn) {
        fn({ type: "com.adobe.csxs.events.ThemeColorChanged" });
      });
    },
  };
  window.__sfxHarness = harness;

  function basename(p) {
    return String(p).split("/").pop();
  }
  function dirname(p) {
    var parts = String(p).split("/");
    parts.pop();
    return parts.join("/") || "/";
  }

  var CALL = /^SFXHost\.call\("([A-Za-z]+)","([^"]*)"\)$/;
  window.__adobe_cep__ = {
    getHostEnvironment: function () {
      return JSON.stringify({ appName: "PPRO", appVersion: "24.6.0", appLocale: "en_US", appId: "PPRO", isAppOnline: true, appSkinInfo: skin });
    },
    evalScript: function (script, callback) {
      var answer;
      var match = CALL.exec(script);
      if (script === "typeof SFXHost") {
        answer = "object";
      } else if (match) {
        var args = JSON.parse(decodeURIComponent(match[2]));
        harness.calls.push({ script: script, name: match[1], args: args });
        answer = JSON.stringify(harness.reply(match[1], args));
      } else {
        harness.calls.push({ script: script, name: null, args: null });
        answer = "EvalScript error.";
      }
      // ExtendScript answers asynchronously.
      setTimeout(function () {
        callback(answer);
      }, 5);
    },
    /** CEP answers file: URIs; the user's folders live in the test's sandbox. */
    getSystemPath: function (type) {
      var home = config.home || "/tmp";
      var paths = { extension: "/extension", userData: home + "/Library/Application Support", myDocuments: config.documents || home + "/Documents" };
      return "file://" + encodeURI(paths[type] || home);
    },
    registerKeyEventsInterest: function (json) {
      harness.keyInterest = JSON.parse(json);
      return true;
    },
    addEventListener: function (type, fn) {
      (listeners[type] = listeners[type] || []).push(fn);
    },
    removeEventListener: function (type, fn) {
      listeners[type] = (listeners[type] || []).filter(function (f) {
        return f !== fn;
      });
    },
    getExtensionId: function () {
      return "com.sfxstudio.panel.main";
    },
  };
  window.cep = {
    util: {
      openURLInDefaultBrowser: function (url) {
        harness.opened.push(url);
        return 0;
      },
    },
  };

  // ---- Node-like modules ---------------------------------------------------------------------

  function toBase64(bytes) {
    var out = "";
    for (var i = 0; i < bytes.length; i += 0x8000) out += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    return btoa(out);
  }
  function fromBase64(text) {
    var raw = atob(text);
    var bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    return bytes;
  }
  function fsCall(op, args) {
    return window.__sfxFs(op, args).then(function (r) {
      if (r && r.error) {
        var e = new Error(r.error + ": " + op + " " + args.path);
        e.code = r.error;
        throw e;
      }
      return r;
    });
  }
  var fs = {
    promises: {
      mkdir: function (path, options) {
        return fsCall("mkdir", { path: path, recursive: !!(options && options.recursive) });
      },
      writeFile: function (path, data, options) {
        var bytes = typeof data === "string" ? new TextEncoder().encode(data) : new Uint8Array(data.buffer || data, data.byteOffset || 0, data.byteLength);
        return fsCall("writeFile", { path: path, data: toBase64(bytes), flag: (options && options.flag) || "w" });
      },
      rename: function (from, to) {
        return fsCall("rename", { path: from, to: to });
      },
      readFile: function (path) {
        return fsCall("readFile", { path: path }).then(function (r) {
          return fromBase64(r.data);
        });
      },
      stat: function (path) {
        return fsCall("stat", { path: path }).then(function (r) {
          return {
            size: r.size,
            isFile: function () {
              return r.isFile;
            },
            isDirectory: function () {
              return r.isDirectory;
            },
          };
        });
      },
    },
  };
  var path = {
    sep: "/",
    join: function () {
      var parts = Array.prototype.slice.call(arguments).filter(Boolean).join("/");
      return parts.replace(/\/+/g, "/").replace(/(.)\/$/, "$1");
    },
    dirname: dirname,
    basename: basename,
    isAbsolute: function (p) {
      return String(p).charAt(0) === "/";
    },
  };
  var os = {
    hostname: function () {
      return config.hostname || "edit-bay-3.local";
    },
    homedir: function () {
      return config.home || "/tmp";
    },
    platform: function () {
      return "darwin";
    },
  };
  var modules = { fs: fs, path: path, os: os };
  // A test may add modules the extension would load by path (window.__sfxExtraModules, set before load).
  window.require = function (name) {
    var extra = window.__sfxExtraModules || {};
    if (extra[name]) return extra[name];
    if (!modules[name]) throw new Error("Cannot find module '" + name + "'");
    return modules[name];
  };
})();
