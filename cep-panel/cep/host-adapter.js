/*
 * The CEP host adapter: the contract of core/host.js over ExtendScript. It is the only place that
 * calls CSInterface.evalScript; cep/host.jsx answers every call with a JSON envelope.
 */
(function (factory) {
  var api = factory();
  if (typeof window !== "undefined" && window.document) {
    (window.SFX = window.SFX || {}).CepAdapter = api;
  } else {
    module.exports = api;
  }
})(function () {
  "use strict";

  var HostError = typeof window !== "undefined" && window.SFX && window.SFX.HostError ? window.SFX.HostError : require("../core/host").HostError;

  var THEME_EVENT = "com.adobe.csxs.events.ThemeColorChanged";
  var CALL_TIMEOUT_MS = 30000;
  var CALLS = ["ping", "getContext", "importAndPlace", "importToBin", "getMarkers", "revealFile"];

  /** The exact script evaluated for a host call; arguments travel URI-encoded inside a double-quoted literal. */
  function buildScript(name, args) {
    if (CALLS.indexOf(name) < 0) throw new HostError("unknown_call", "Unknown host call: " + name);
    return 'SFXHost.call("' + name + '","' + encodeURIComponent(JSON.stringify(args || {})) + '")';
  }

  /** Turns the host's JSON envelope into a result, or throws a HostError. */
  function decodeReply(raw) {
    if (raw === undefined || raw === null || raw === "" || raw === "EvalScript error.") {
      throw new HostError("host_unavailable", "Premiere Pro did not answer. Reopen the panel and try again.");
    }
    var reply;
    try {
      reply = JSON.parse(raw);
    } catch (e) {
      throw new HostError("bad_reply", "Premiere Pro answered something unexpected.");
    }
    if (!reply || typeof reply !== "object") throw new HostError("bad_reply", "Premiere Pro answered something unexpected.");
    if (reply.ok) return reply.result;
    var error = reply.error || {};
    throw new HostError(error.code || "host_error", error.message || "Premiere Pro reported an error.");
  }

  function readTheme(csInterface) {
    var env = typeof csInterface.getHostEnvironment === "function" ? csInterface.getHostEnvironment() : csInterface.hostEnvironment;
    var skin = (env && env.appSkinInfo) || {};
    var bg = skin.panelBackgroundColor && skin.panelBackgroundColor.color;
    return {
      background: bg ? { red: bg.red, green: bg.green, blue: bg.blue } : { red: 35, green: 35, blue: 35 },
      fontSize: skin.baseFontSize || 11,
      fontFamily: skin.baseFontFamily || "",
      hostVersion: env && env.appVersion,
    };
  }

  /**
   * @param {object} csInterface an instance of CSInterface
   * @param {{timeoutMs?: number}} [options]
   */
  function create(csInterface, options) {
    var timeoutMs = (options && options.timeoutMs) || CALL_TIMEOUT_MS;
    var loading = null;

    function evalScript(script) {
      return new Promise(function (resolve, reject) {
        var timer = setTimeout(function () {
          reject(new HostError("host_timeout", "Premiere Pro is busy (a dialog may be open). Try again."));
        }, timeoutMs);
        csInterface.evalScript(script, function (raw) {
          clearTimeout(timer);
          resolve(raw);
        });
      });
    }

    // The manifest loads jsx/host.jsx, but a reloaded panel can find the engine without it: load it once.
    function ensureHost() {
      if (!loading) {
        loading = evalScript("typeof SFXHost").then(function (kind) {
          if (kind === "object") return;
          var dir = csInterface.getSystemPath ? csInterface.getSystemPath("extension") : "";
          var file = encodeURIComponent(dir + "/cep/host.jsx");
          return evalScript('$.evalFile(decodeURIComponent("' + file + '"))');
        });
        loading.catch(function () {
          loading = null;
        });
      }
      return loading;
    }

    function call(name, args) {
      var script = buildScript(name, args);
      return ensureHost()
        .then(function () {
          return evalScript(script);
        })
        .then(decodeReply);
    }

    return {
      info: function () {
        var theme = readTheme(csInterface);
        return { adapter: "cep", host: "PPRO", hostVersion: theme.hostVersion || "", lockedTracksKnown: true };
      },
      getContext: function () {
        return call("getContext", {});
      },
      importAndPlace: function (file, opts) {
        opts = opts || {};
        return call("importAndPlace", {
          path: file,
          duration: opts.duration,
          bin: opts.bin,
          track: opts.track === undefined ? "auto" : opts.track,
          time: opts.time,
        });
      },
      importToBin: function (file, bin) {
        return call("importToBin", { path: file, bin: bin });
      },
      getMarkers: function () {
        return call("getMarkers", {});
      },
      revealFile: function (file) {
        return call("revealFile", { path: file });
      },
      preview: function () {
        // CEP plays previews in the panel itself (cep/player.js).
        return Promise.resolve({ opened: false });
      },
      openURL: function (url) {
        if (typeof csInterface.openURLInDefaultBrowser === "function") csInterface.openURLInDefaultBrowser(url);
        else window.open(url, "_blank");
      },
      getTheme: function () {
        return readTheme(csInterface);
      },
      onThemeChange: function (callback) {
        function listener() {
          callback(readTheme(csInterface));
        }
        csInterface.addEventListener(THEME_EVENT, listener);
        return function () {
          if (csInterface.removeEventListener) csInterface.removeEventListener(THEME_EVENT, listener);
        };
      },
    };
  }

  /** Outside Premiere (a plain browser) every host call says so instead of failing obscurely. */
  function createUnavailable() {
    function refuse() {
      return Promise.reject(new HostError("no_host", "Open this panel inside Premiere Pro to use the timeline."));
    }
    return {
      info: function () {
        return { adapter: "none", host: "", hostVersion: "", lockedTracksKnown: true };
      },
      getContext: refuse,
      importAndPlace: refuse,
      importToBin: refuse,
      getMarkers: refuse,
      revealFile: refuse,
      preview: refuse,
      openURL: function (url) {
        window.open(url, "_blank");
      },
      getTheme: function () {
        var dark = !window.matchMedia || !window.matchMedia("(prefers-color-scheme: light)").matches;
        return { background: dark ? { red: 35, green: 35, blue: 35 } : { red: 230, green: 230, blue: 230 }, fontSize: 11, fontFamily: "" };
      },
      onThemeChange: function () {
        return function () {};
      },
    };
  }

  return { create: create, createUnavailable: createUnavailable, buildScript: buildScript, decodeReply: decodeReply, HostError: HostError, THEME_EVENT: THEME_EVENT };
});
