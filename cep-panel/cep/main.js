/*
 * The CEP shell: builds what the shared UI needs from CEP (CSInterface, Node's fs through
 * --enable-nodejs, CEP's system paths) and starts it. Outside Premiere (a plain browser) the same page
 * opens with the host unavailable and settings kept in the browser.
 */
(function () {
  "use strict";
  var SFX = window.SFX;

  // Windows virtual-key codes and macOS kVK codes for Enter/Return and Escape: without this interest
  // Premiere keeps these keys for itself unless a text field has focus.
  var KEYS = [
    { keyCode: 13 }, { keyCode: 13, ctrlKey: true }, { keyCode: 27 },
    { keyCode: 36 }, { keyCode: 36, metaKey: true }, { keyCode: 53 },
  ];

  function browserBackend() {
    var KEY = "sfx.panel";
    return {
      read: function () {
        return Promise.resolve(JSON.parse(window.localStorage.getItem(KEY) || "null"));
      },
      write: function (doc) {
        window.localStorage.setItem(KEY, JSON.stringify(doc));
        return Promise.resolve();
      },
    };
  }

  /**
   * What SFX.Updates needs in CEP: the pinned manifest keys (core/update-keys.js) and the installer
   * (cep/installer.js, a Node module), each used only when that file is part of the build.
   */
  function updateOptions(cs, req) {
    var opts = { publicKeys: SFX.UpdateKeys || [] };
    if (cs && req) {
      try {
        opts.installer = req(cs.getSystemPath("extension") + "/cep/installer.js").createInstaller();
      } catch (e) {
        opts.installer = undefined;
      }
    }
    return opts;
  }

  /**
   * An update staged by the installer (no UPIA) is swapped in before the UI mounts; the page then
   * reloads from the swapped folder. True when it did (the caller stops: the reload starts over).
   */
  function applyPendingUpdate(installer) {
    if (!installer || typeof installer.applyPending !== "function") return false;
    try {
      var result = installer.applyPending();
      if (result && result.swapped) {
        window.location.reload();
        return true;
      }
    } catch (e) {
      /* a failed swap keeps the running version; the next start tries again */
    }
    return false;
  }

  function boot() {
    var inCep = !!(window.__adobe_cep__ && window.CSInterface);
    var cs = inCep ? new window.CSInterface() : null;
    var req = SFX.Files.nodeRequire();
    var updates = updateOptions(cs, req);
    if (applyPendingUpdate(updates.installer)) return;
    var node = req ? { fs: req("fs"), path: req("path") } : null;
    var backend = cs && node ? SFX.CepStorage.backend(node, cs.getSystemPath("userData"), window.localStorage) : browserBackend();
    if (cs && cs.registerKeyEventsInterest) cs.registerKeyEventsInterest(JSON.stringify(KEYS));
    SFX.Store.open(backend).then(function (store) {
      SFX.App.start({
        product: "cep",
        version: document.documentElement.getAttribute("data-version") || "",
        host: cs ? SFX.CepAdapter.create(cs) : SFX.CepAdapter.createUnavailable(),
        store: store,
        files: SFX.Files.fromNode({ documents: cs ? cs.getSystemPath("myDocuments") : "" }),
        player: SFX.CepPlayer,
        deviceName: SFX.Files.hostname(),
        updateOptions: updates,
      });
    });
  }

  boot();
})();
