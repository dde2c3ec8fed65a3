/*
 * The UXP shell (Premiere 25.6+): builds what the shared UI needs from UXP's modules (premierepro,
 * uxp, fs, os) and starts it. The network permission in manifest.json names the server's origin,
 * so this build talks to that server only; settings say so.
 */
(function () {
  "use strict";
  var SFX = window.SFX;

  function boot() {
    var ppro = require("premierepro");
    var uxp = require("uxp");
    var fs = require("fs");
    var os = require("os");
    var node = SFX.UxpFiles.node(fs, os);
    var host = SFX.UxpAdapter.create({
      ppro: ppro,
      uxp: uxp,
      document: document,
      exists: function (path) {
        return node.fs.promises.stat(path).then(
          function (s) {
            return s.isFile() && s.size > 0;
          },
          function () {
            return false;
          }
        );
      },
    });
    var manifestVersion = uxp.versions && uxp.versions.plugin;
    SFX.Store.open(SFX.UxpStorage.plain(fs), SFX.UxpStorage.secret(uxp.storage.secureStorage)).then(function (store) {
      var allowed = window.__SFX_ALLOWED_ORIGINS__ || [];
      SFX.App.start({
        product: "uxp",
        version: manifestVersion || document.documentElement.getAttribute("data-version") || "",
        host: host,
        store: store,
        files: new SFX.Files.FileStore(node, { documents: node.path.join(os.homedir(), "Documents") }),
        player: SFX.UxpPlayer.create(host, uxp),
        defaults: allowed.length ? { serverUrl: allowed[0] } : undefined,
        allowedOrigins: allowed,
        // No installer: a UXP plugin cannot replace itself, so Install opens the .ccx's download link.
        updateOptions: { publicKeys: SFX.UpdateKeys || [] },
        deviceName: "Premiere Pro on " + (os.platform() === "darwin" ? "macOS" : os.platform() === "win32" ? "Windows" : os.platform()),
        serverHint: allowed.length ? "This plugin may reach " + allowed.join(", ") + " only (set when it was built)." : "",
      });
    });
  }

  boot();
})();
