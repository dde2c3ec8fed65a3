/* Settings: output folder, bin, track, bit depth, server; account links, sign out, updates. */
(function () {
  "use strict";
  var SFX = window.SFX;
  var D = SFX.Dom;
  var $ = D.$;

  SFX.Views.Settings = {
    mount: function (ctx) {
      var state = ctx.state;
      var settings = ctx.settings;

      function open() {
        $("set-folder").value = settings.folder;
        $("set-bin").value = settings.bin;
        $("set-bits").value = String(settings.bitDepth);
        $("set-server").value = settings.serverUrl;
        $("set-folder").placeholder = "Beside the project, else Documents/AI SFX";
        $("set-folder-hint").textContent = ctx.files ? "Empty: next to the saved project, else " + ctx.files.folderFor("", "") + "." : "File access needs Premiere Pro.";
        $("set-track-hint").textContent = ctx.host.info().lockedTracksKnown === false ? "Premiere's UXP API does not tell locked tracks apart: Auto may pick a locked track, and the panel then says the clip was not placed." : "";
        $("set-server-hint").textContent = ctx.serverHint || "";
        var track = $("set-track");
        D.trimOptions(track, 1);
        var current = String(settings.track);
        ctx.host.getContext().then(
          function (c) {
            state.set({ sequence: c.sequence });
            var tracks = (c.sequence && c.sequence.audioTracks) || [];
            tracks.forEach(function (t) {
              D.addOption(track, t.name + (t.locked ? " (locked)" : ""), String(t.index));
            });
            if (current !== "auto" && !tracks[Number(current)]) D.addOption(track, "A" + (Number(current) + 1), current);
            track.value = current;
          },
          function () {
            if (current !== "auto") D.addOption(track, "A" + (Number(current) + 1), current);
            track.value = current;
          }
        );
        $("settings-version").textContent = "SFX Studio panel " + ctx.version + " · " + ctx.host.info().adapter;
        state.set({ view: "settings" });
      }

      function save() {
        var server = $("set-server").value.trim().replace(/\/+$/, "") || SFX.Settings.DEFAULTS.serverUrl;
        var serverChanged = server !== settings.serverUrl;
        if (ctx.allowedOrigins.length && ctx.allowedOrigins.indexOf(SFX.Settings.origin(server)) < 0) {
          $("set-server-hint").textContent = "This plugin may reach " + ctx.allowedOrigins.join(", ") + " only: ask for a build made for " + SFX.Settings.origin(server) + ".";
          $("set-server-hint").setAttribute("data-error", "true");
          return;
        }
        settings.folder = $("set-folder").value.trim();
        settings.bin = $("set-bin").value.trim() || SFX.Settings.DEFAULTS.bin;
        settings.track = $("set-track").value;
        settings.bitDepth = Number($("set-bits").value);
        settings.save();
        if (serverChanged) {
          ctx.changeServer(server);
          // Tokens belong to the old server.
          ctx.api.tokens.clear();
          return ctx.showSignIn("Sign in to " + server.replace(/^https?:\/\//, "") + ".");
        }
        state.set({ view: "main" });
        ctx.updateCosts();
      }

      D.on($("btn-settings"), "click", open);
      D.on($("settings-close"), "click", function () {
        state.set({ view: "main" });
      });
      D.on($("settings-form"), "submit", function (event) {
        event.preventDefault();
        save();
      });
      D.on($("settings-signout"), "click", function () {
        ctx.api.logout().then(function () {
          ctx.showSignIn("");
        });
      });
      D.on($("settings-manage"), "click", function () {
        ctx.host.openURL(settings.serverUrl.replace(/\/+$/, "") + "/dashboard");
      });

      ctx.openSettings = open;
    },
  };
})();
