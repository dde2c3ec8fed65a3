/*
 * The update offer: renders state.update (version, notes, size; Later and Install). A mandatory
 * update (or the server's 426 panel_outdated) cannot be put off and blocks Generate until installed.
 * Checking, verifying and installing belong to SFX.Updates (core/updates.js), used only when loaded.
 */
(function () {
  "use strict";
  var SFX = window.SFX;
  var D = SFX.Dom;
  var $ = D.$;

  var ENTITIES = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'", nbsp: " " };
  /** The notes' HTML as plain text: tags dropped, entities read (the server escapes what notes quote). */
  function notesText(html) {
    return String(html || "")
      .replace(/<[^>]*>/g, " ")
      .replace(/&(#x[0-9a-f]+|#\d+|[a-z]+);/gi, function (all, name) {
        if (name.charAt(0) !== "#") return ENTITIES[name.toLowerCase()] || all;
        var code = name.charAt(1).toLowerCase() === "x" ? parseInt(name.slice(2), 16) : parseInt(name.slice(1), 10);
        return code > 0 && code < 0x110000 ? String.fromCodePoint(code) : all;
      })
      .replace(/\s+/g, " ")
      .trim();
  }

  SFX.Views.UpdateOffer = {
    mount: function (ctx) {
      var state = ctx.state;

      /** Web Storage-like view of the panel's storage, for the update checker's serial and install id. */
      var storage = {
        getItem: function (key) {
          var map = ctx.store.get("updates") || {};
          return map[key] === undefined ? null : map[key];
        },
        setItem: function (key, value) {
          var map = Object.assign({}, ctx.store.get("updates") || {});
          map[key] = String(value);
          ctx.store.set("updates", map);
        },
      };
      function options(extra) {
        var base = {
          baseUrl: ctx.settings.serverUrl,
          product: ctx.product,
          installedVersion: ctx.version,
          hostVersion: ctx.host.info().hostVersion,
          storage: storage,
          fetch: ctx.fetch,
        };
        return Object.assign(base, ctx.updateOptions || {}, extra || {});
      }

      function render(v) {
        var offer = v.update;
        D.show($("update-offer"), !!offer);
        if (offer) document.body.setAttribute("data-update", offer.mandatory ? "mandatory" : "offer");
        else document.body.removeAttribute("data-update");
        if (!offer) return;
        $("update-offer").setAttribute("data-mandatory", String(!!offer.mandatory));
        $("update-title").textContent = "SFX Studio " + (offer.version || "update") + (offer.mandatory ? " is required" : " is available");
        $("update-size").textContent = offer.size ? " · " + SFX.Format.bytes(offer.size) : "";
        // Release notes come signed from our own update manifest; shown as text, never as markup.
        $("update-notes").textContent = notesText(offer.notes_html);
        var message = offer.error || (offer.progress !== undefined ? "Downloading… " + Math.round(offer.progress * 100) + "%" : "");
        if (!message && offer.mandatory) message = offer.outdated ? "This panel is too old for the server. Install the update to keep generating." : "This update is required: Generate is off until it is installed.";
        $("update-message").textContent = message;
        D.show($("update-later"), !offer.mandatory);
        $("update-install").disabled = offer.progress !== undefined && !offer.error;
      }

      function install() {
        var offer = state.get("update");
        if (!offer) return;
        var opts = options({
          onProgress: function (fraction) {
            state.set({ update: Object.assign({}, state.get("update"), { progress: Math.max(0, Math.min(1, Number(fraction) || 0)) }) });
          },
        });
        if (!SFX.Updates || !opts.installer) {
          // No in-panel installer (UXP cannot replace itself; or core/updates.js is not loaded): the
          // package opens from its download link and Creative Cloud or UPIA installs it.
          if (offer.url) ctx.host.openURL(offer.url);
          state.set({ update: Object.assign({}, offer, { error: "Opening the download: open the file to install it, then restart Premiere Pro." }) });
          return;
        }
        state.set({ update: Object.assign({}, offer, { progress: 0, error: "" }) });
        SFX.Updates.install(offer, opts).then(
          function () {
            state.set({ update: Object.assign({}, state.get("update"), { progress: 1, error: "Installed. Restart Premiere Pro to use " + (offer.version || "the new version") + "." }) });
          },
          function (error) {
            state.set({ update: Object.assign({}, state.get("update"), { progress: undefined, error: (error && error.message) || "The update could not be installed." }) });
          }
        );
      }

      /** Asks SFX.Updates for an offer; quiet unless the editor asked (button in settings). */
      function check(asked) {
        var status = $("settings-update-status");
        function say(text) {
          if (!asked) return;
          status.textContent = text;
          D.show(status, !!text);
        }
        if (!SFX.Updates) return Promise.resolve(say("Updates are installed from the download page for this build."));
        say("Checking…");
        return SFX.Updates.check(options()).then(
          function (r) {
            var offer = r && r.offer;
            // A refused manifest (bad signature, old serial, ...) is not "up to date": say so.
            if (r && r.refused) return say("Couldn't check for updates: " + (r.message || r.reason || "the update manifest was refused") + ".");
            if (offer) {
              state.set({ update: Object.assign({}, offer) });
              say("Version " + offer.version + " is available.");
            } else say("You have the latest version.");
          },
          function (error) {
            say("Couldn't check for updates: " + ((error && error.message) || "unknown error"));
          }
        );
      }

      state.subscribe(["update"], render);
      D.on($("update-later"), "click", function () {
        var offer = state.get("update");
        if (offer && !offer.mandatory) state.set({ update: null });
      });
      D.on($("update-install"), "click", install);
      D.on($("settings-check-updates"), "click", function () {
        check(true);
      });

      ctx.checkUpdates = check;
    },
  };
})();
