/*
 * Starts the shared UI inside a shell (cep/main.js or uxp/main.js), which brings what differs between
 * the builds: the host adapter, the opened storage, file access, the audio player and the product.
 * Everything here and in the views is the same code in both builds.
 *
 *   SFX.App.start({product, version, host, store, files, player, deviceName,
 *                  defaults?, allowedOrigins?, serverHint?, updateOptions?, fetch?})
 *   allowedOrigins: the only servers this build may reach (UXP's manifest network permission).
 */
(function () {
  "use strict";
  var SFX = window.SFX;
  var D = SFX.Dom;
  var $ = D.$;
  var UPDATE_CHECK_MS = 4 * 3600 * 1000;
  var VIEWS = ["Notices", "Account", "SignIn", "SfxForm", "VoiceForm", "Generate", "Results", "History", "Settings", "UpdateOffer", "Assist", "Spot"];

  function start(shell) {
    SFX.Markup.render(document.body);
    var store = shell.store;
    var state = new SFX.State.Store();
    var settings = SFX.Settings.load(store, shell.defaults);
    var ctx = {
      state: state,
      store: store,
      settings: settings,
      host: shell.host,
      files: shell.files,
      player: shell.player,
      product: shell.product,
      version: shell.version,
      deviceName: shell.deviceName || "Premiere Pro panel",
      serverHint: shell.serverHint,
      allowedOrigins: shell.allowedOrigins || [],
      updateOptions: shell.updateOptions,
      fetch: shell.fetch || window.fetch.bind(window),
      local: new SFX.History.LocalCopies(store),
      keys: new SFX.Api.KeyRing(SFX.Api.uuid),
    };
    ctx.api = new SFX.Api.Client({
      baseUrl: settings.serverUrl,
      fetch: ctx.fetch,
      tokens: SFX.Store.tokenStore(store),
      panelVersion: shell.version,
      panelProduct: shell.product,
      onSignedOut: function () {
        ctx.showSignIn("Your session ended. Please sign in again.");
      },
    });
    ctx.changeServer = function (server) {
      settings.serverUrl = server;
      settings.save();
      ctx.api.baseUrl = server;
    };
    /** Asks the host for the sequence (frame rate for timecodes, tracks); never fails the caller. */
    ctx.refreshContext = function () {
      return ctx.host.getContext().then(
        function (c) {
          state.set({ sequence: c.sequence });
          return c;
        },
        function () {
          return null;
        }
      );
    };
    ctx.enterMain = function () {
      state.set({ view: "main" });
      ctx.refreshAccount();
      ctx.loadPricing();
      ctx.refreshContext();
      ctx.updateCosts();
      ctx.checkUpdates(false);
      $("sfx-prompt").focus();
    };
    VIEWS.forEach(function (name) {
      SFX.Views[name].mount(ctx);
    });

    state.subscribe(["view"], function (v) {
      D.show($("view-signin"), v.view === "signin");
      D.show($("view-main"), v.view === "main");
      D.show($("view-settings"), v.view === "settings");
      document.body.setAttribute("data-view", v.view);
    });
    state.subscribe(["tab"], function (v) {
      var tabs = document.querySelectorAll("[data-tab]");
      for (var i = 0; i < tabs.length; i++) tabs[i].setAttribute("aria-selected", String(tabs[i].getAttribute("data-tab") === v.tab));
      D.show($("tab-sfx"), v.tab === "sfx");
      D.show($("tab-voice"), v.tab === "voice");
      D.show($("tab-history"), v.tab === "history");
      if (v.tab === "voice" && !v.voices) ctx.loadVoices();
      if (v.tab === "history") ctx.loadHistory(true);
    });
    var tabs = document.querySelectorAll("[data-tab]");
    for (var i = 0; i < tabs.length; i++) {
      D.on(tabs[i], "click", function (event) {
        state.set({ tab: event.currentTarget.getAttribute("data-tab") });
      });
    }
    bindKeys(ctx);

    // Panels stay open for days: look for updates every few hours too, not only at start.
    setInterval(function () {
      if (state.get("view")) ctx.checkUpdates(false);
    }, UPDATE_CHECK_MS);

    // A sleeping laptop or a dropped network: check again when the panel comes back.
    D.on(window, "online", function () {
      if (state.get("me")) ctx.refreshAccount();
    });
    var lastFocusRefresh = 0;
    D.on(window, "focus", function () {
      if (!state.get("me") || state.get("busy") || Date.now() - lastFocusRefresh < 30000) return;
      lastFocusRefresh = Date.now();
      ctx.refreshAccount();
      ctx.refreshContext();
    });

    SFX.Theme.apply(ctx.host.getTheme());
    ctx.host.onThemeChange(function (theme) {
      SFX.Theme.apply(theme);
      var waves = document.querySelectorAll(".result");
      for (var w = 0; w < waves.length; w++) waves[w].dispatchEvent(new Event("themechange"));
    });
    ctx.showDuration();
    if (ctx.api.isSignedIn()) ctx.enterMain();
    else ctx.showSignIn("");
    return ctx;
  }

  /**
   * Panel-wide keys, wherever the focus is (the shell registers them with the host, which otherwise
   * keeps keys for itself unless a text field has focus): Esc cancels or closes settings,
   * Ctrl/Cmd+Enter generates on the open tab.
   */
  function bindKeys(ctx) {
    var state = ctx.state;
    D.on(document, "keydown", function (event) {
      if (event.key === "Escape") {
        if (state.get("busy")) {
          event.preventDefault();
          ctx.cancelGeneration();
        } else if (state.get("view") === "settings") {
          state.set({ view: "main" });
        }
        return;
      }
      if (event.key === "Enter" && (event.metaKey || event.ctrlKey) && state.get("view") === "main" && !event.defaultPrevented) {
        var tab = state.get("tab");
        if (tab === "sfx" || tab === "voice") {
          event.preventDefault();
          ctx.generate(tab);
        }
      }
    });
    // The browser's own menu (Back, Forward, View Source) means nothing in a panel; text fields keep
    // theirs for cut, copy and paste.
    D.on(document, "contextmenu", function (event) {
      var t = event.target;
      if (!(t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA"))) event.preventDefault();
    });
  }

  SFX.App = { start: start };
})();
