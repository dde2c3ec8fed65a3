/*
 * Test harness: a UXP-like environment around the panel in a plain Chromium page, injected before the
 * plugin's scripts (after tests/premierepro-sim.js). It provides what Premiere's UXP runtime would:
 *   - require("premierepro")  the simulated premierepro module (async API, lockedAccess, TickTime)
 *   - require("uxp")          secureStorage (kept apart and inspectable), localFileSystem's temporary
 *                             folder, shell.openExternal/openPath (recorded), host and plugin versions
 *   - require("fs")           UXP's promise-style fs with plugin-data:/ and plugin-temp:/ schemes,
 *                             backed by the test's sandbox (window.__sfxFs) so files land on disk
 *   - require("os")           homedir, platform
 *   - document.theme          getCurrent() and onUpdated, as UXP has them
 *   - the network permission  fetch refuses any origin not in the staged manifest.json's domains
 * And it takes away what UXP lacks, so the shared UI cannot lean on it: Web Audio and <audio>.
 * Configuration arrives as window.__SFX_HARNESS_CONFIG__.
 */
(function () {
  "use strict";
  var config = window.__SFX_HARNESS_CONFIG__ || {};
  var home = config.home || "/tmp";

  delete window.AudioContext;
  delete window.webkitAudioContext;
  delete window.Audio;

  var markers = (config.markers || []).map(function (m) {
    return [m.time, m.name, m.comments, m.end > m.time ? m.end - m.time : 0];
  });
  function stat(path) {
    return window.__sfxFs("stat", { path: native(path) });
  }
  var world = window.PremiereproSim.create({
    project: { name: "Film.prproj", path: home + "/Projects/Film/Film.prproj" },
    sequence: { name: "Main edit", fps: 25, playhead: 12.5, duration: 120, tracks: [{ name: "A1", clips: [[0, 60]] }, {}, {}, {}], markers: markers },
    exists: function (path) {
      return stat(path).then(function (r) {
        return !r.error && r.isFile;
      });
    },
  });

  var secure = {};
  var themeListeners = [];
  var harness = {
    world: world,
    secure: secure,
    opened: [],
    revealed: [],
    refused: [],
    theme: "dark",
    clips: function (index) {
      return world.sequence.track(index)._clips.map(function (c) {
        return [c._start, c._end, c._name, c._item ? c._item._mediaPath : null];
      });
    },
    bin: function (name) {
      var bin = world.project.binNamed(name);
      return bin ? bin._children.map(function (c) { return c._mediaPath; }) : null;
    },
    setTheme: function (name) {
      harness.theme = name;
      themeListeners.forEach(function (fn) { fn(); });
    },
  };
  window.__sfxHarness = harness;

  // ---- UXP-style fs -----------------------------------------------------------------------------

  function native(path) {
    var p = String(path);
    if (p.indexOf("plugin-data:/") === 0) return home + "/plugin-data/" + p.slice("plugin-data:/".length);
    if (p.indexOf("plugin-temp:/") === 0) return home + "/plugin-temp/" + p.slice("plugin-temp:/".length);
    if (p.indexOf("file:") === 0) return p.replace(/^file:\/*/, "/");
    return p;
  }
  function call(op, args) {
    return window.__sfxFs(op, args).then(function (r) {
      if (r && r.error) {
        var e = new Error(r.error + ": " + op + " " + args.path);
        e.code = r.error;
        throw e;
      }
      return r;
    });
  }
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
  function bytesOf(data) {
    if (typeof data === "string") return new TextEncoder().encode(data);
    if (data instanceof ArrayBuffer) return new Uint8Array(data);
    return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  }
  function parent(path) {
    return path.slice(0, path.lastIndexOf("/")) || "/";
  }
  var fs = {
    readFile: function (path, options) {
      return call("readFile", { path: native(path) }).then(function (r) {
        var bytes = fromBase64(r.data);
        return options && options.encoding ? new TextDecoder().decode(bytes) : bytes.buffer;
      });
    },
    writeFile: function (path, data, options) {
      var target = native(path);
      var write = function () {
        return call("writeFile", { path: target, data: toBase64(bytesOf(data)), flag: (options && options.flag) || "w" });
      };
      // plugin-data:/ and plugin-temp:/ exist from the start in UXP.
      if (/^plugin-(data|temp):\//.test(String(path))) return call("mkdir", { path: parent(target), recursive: true }).then(write);
      return write();
    },
    mkdir: function (path, options) {
      return call("mkdir", { path: native(path), recursive: !!(options && options.recursive) });
    },
    lstat: function (path) {
      return call("stat", { path: native(path) }).then(function (r) {
        return { size: r.size, isFile: function () { return r.isFile; }, isDirectory: function () { return r.isDirectory; } };
      });
    },
    rename: function (from, to) {
      return call("rename", { path: native(from), to: native(to) });
    },
  };

  var uxp = {
    host: { name: "premierepro", version: "26.3.0", uiLocale: "en_US" },
    versions: { uxp: "8.4.0", plugin: config.pluginVersion || "0.1.0" },
    shell: {
      openExternal: function (url) {
        harness.opened.push(url);
        return Promise.resolve("");
      },
      openPath: function (path) {
        harness.revealed.push(path);
        return Promise.resolve("");
      },
    },
    storage: {
      formats: { utf8: "utf8", binary: "binary" },
      secureStorage: {
        setItem: function (key, value) {
          secure[key] = typeof value === "string" ? value : new TextDecoder().decode(value);
          return Promise.resolve();
        },
        getItem: function (key) {
          return Promise.resolve(key in secure ? new TextEncoder().encode(secure[key]) : null);
        },
        removeItem: function (key) {
          delete secure[key];
          return Promise.resolve();
        },
      },
      localFileSystem: {
        getTemporaryFolder: function () {
          var dir = home + "/plugin-temp";
          return Promise.resolve({
            nativePath: dir,
            createFile: function (name) {
              var path = dir + "/" + name;
              return Promise.resolve({
                nativePath: path,
                write: function (data) {
                  return call("mkdir", { path: dir, recursive: true }).then(function () {
                    return call("writeFile", { path: path, data: toBase64(bytesOf(data)), flag: "w" });
                  });
                },
              });
            },
          });
        },
      },
    },
  };
  var os = {
    homedir: function () { return home; },
    platform: function () { return "darwin"; },
  };
  var modules = { premierepro: world.module, uxp: uxp, fs: fs, os: os };
  window.require = function (name) {
    if (!modules[name]) throw new Error("Cannot find module '" + name + "'");
    return modules[name];
  };

  document.theme = {
    getCurrent: function () { return harness.theme; },
    onUpdated: {
      addListener: function (fn) { themeListeners.push(fn); },
      removeListener: function (fn) { themeListeners = themeListeners.filter(function (f) { return f !== fn; }); },
    },
  };

  // UXP's network permission: only the manifest's domains are reachable.
  var allowed = config.domains || [];
  var realFetch = window.fetch.bind(window);
  window.fetch = function (input, init) {
    var url = new URL(typeof input === "string" ? input : input.url, location.href);
    if (allowed.indexOf(url.origin) < 0) {
      harness.refused.push(url.href);
      return Promise.reject(new TypeError("Network request to " + url.origin + " is not permitted by the manifest"));
    }
    return realFetch(input, init);
  };
})();
