/*
 * The panel's UI: wires the DOM to the API client, the file store and the host adapter.
 * Network and state rules live in js/core (tested in Node); Premiere is reached only through the adapter.
 */
(function () {
  "use strict";

  var SFX = window.SFX;
  var Api = SFX.Api;
  var Pricing = SFX.Pricing;
  var Files = SFX.Files;

  var DEFAULTS = { serverUrl: "http://127.0.0.1:8080", folder: "", bin: "AI SFX", track: "auto", bitDepth: 16 };
  var SETTINGS_KEY = "sfx.settings";
  var LOCAL_KEY = "sfx.local";
  var MAX_LOCAL = 500;
  var MAX_RESULTS = 12;
  // Past the server's own upstream deadline a request is treated as lost (and retried with its key).
  var CLIENT_TIMEOUT_MS = 180000;

  function $(id) {
    return document.getElementById(id);
  }
  function on(el, type, fn) {
    el.addEventListener(type, fn);
  }
  function show(el, visible) {
    el.hidden = !visible;
  }
  function plural(n, word) {
    return n + " " + word + (n === 1 ? "" : "s");
  }
  function seconds(s) {
    return (Math.round(s * 10) / 10).toFixed(1) + " s";
  }
  function clock(s) {
    var m = Math.floor(s / 60);
    var rest = s - m * 60;
    return m + ":" + (rest < 10 ? "0" : "") + rest.toFixed(1);
  }
  function shortDate(iso) {
    var d = new Date(iso);
    if (isNaN(d.getTime())) return "";
    return d.toLocaleDateString(undefined, { day: "numeric", month: "short" });
  }
  function dateTime(iso) {
    var d = new Date(iso);
    if (isNaN(d.getTime())) return "";
    return d.toLocaleDateString(undefined, { day: "numeric", month: "short" }) + " " + d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
  }
  function basename(p) {
    return String(p).split(/[\\/]/).pop();
  }

  // ---- settings and local copies ---------------------------------------------------------

  function loadJSON(key, fallback) {
    try {
      var raw = localStorage.getItem(key);
      return raw ? JSON.parse(raw) : fallback;
    } catch (e) {
      return fallback;
    }
  }
  var settings = Object.assign({}, DEFAULTS, loadJSON(SETTINGS_KEY, {}));
  function saveSettings() {
    localStorage.setItem(SETTINGS_KEY, JSON.stringify(settings));
  }
  /** Generation id -> path of the file this panel wrote, so History re-inserts without downloading. */
  function localPath(id) {
    return loadJSON(LOCAL_KEY, {})[id] || null;
  }
  function rememberLocal(id, path) {
    var map = loadJSON(LOCAL_KEY, {});
    delete map[id];
    map[id] = path;
    var ids = Object.keys(map);
    for (var i = 0; i < ids.length - MAX_LOCAL; i++) delete map[ids[i]];
    localStorage.setItem(LOCAL_KEY, JSON.stringify(map));
  }

  // ---- collaborators ----------------------------------------------------------------------

  var host = window.__adobe_cep__ && window.CSInterface ? SFX.CepAdapter.create(new window.CSInterface()) : SFX.CepAdapter.createUnavailable();
  var files = Files.fromNode();
  var api = new Api.Client({
    baseUrl: settings.serverUrl,
    fetch: window.fetch.bind(window),
    tokens: new Api.TokenStore(localStorage),
    onSignedOut: function () {
      showSignIn("Your session ended. Please sign in again.");
    },
  });
  var keys = new Api.KeyRing(Api.uuid);

  var state = {
    me: null,
    pricing: null,
    limits: Pricing.limits(null),
    voices: null,
    busy: null,
    waitUntil: 0,
    countdown: 0,
    upgradeUrl: "",
    markerTime: null,
    history: { kind: "", cursor: null, loading: false },
  };

  // ---- views ------------------------------------------------------------------------------

  function showView(name) {
    show($("view-signin"), name === "signin");
    show($("view-main"), name === "main");
    show($("view-settings"), name === "settings");
    document.body.setAttribute("data-view", name);
  }

  function deviceName() {
    return Files.hostname() || "Premiere Pro panel";
  }

  function showSignIn(message) {
    cancelGeneration();
    state.me = null;
    showView("signin");
    $("signin-server").value = settings.serverUrl;
    $("signin-server-label").textContent = settings.serverUrl.replace(/^https?:\/\//, "");
    $("signin-device").textContent = deviceName();
    setSignInError(message || "");
    setTimeout(function () {
      ($("signin-email").value ? $("signin-password") : $("signin-email")).focus();
    }, 0);
  }

  function setSignInError(message) {
    $("signin-error").textContent = message;
    show($("signin-error"), !!message);
  }

  function enterMain() {
    showView("main");
    refreshAccount();
    loadPricing();
    updateCosts();
    $("sfx-prompt").focus();
  }

  function selectTab(name) {
    var tabs = document.querySelectorAll("[data-tab]");
    for (var i = 0; i < tabs.length; i++) tabs[i].setAttribute("aria-selected", String(tabs[i].getAttribute("data-tab") === name));
    show($("tab-sfx"), name === "sfx");
    show($("tab-voice"), name === "voice");
    show($("tab-history"), name === "history");
    if (name === "voice" && !state.voices) loadVoices();
    if (name === "history") loadHistory(true);
  }

  // ---- banners and toasts -------------------------------------------------------------------

  var bannerAction = null;
  function banner(kind, text, actionLabel, action) {
    var el = $("banner");
    el.setAttribute("data-kind", kind);
    $("banner-text").textContent = text;
    $("banner-action").textContent = actionLabel || "";
    show($("banner-action"), !!actionLabel);
    bannerAction = action || null;
    show(el, true);
  }
  function hideBanner(kind) {
    var el = $("banner");
    if (!kind || el.getAttribute("data-kind") === kind) {
      show(el, false);
      el.removeAttribute("data-kind");
    }
  }

  var toastTimer = 0;
  var toastAction = null;
  function toast(text, kind, actionLabel, action) {
    var el = $("toast");
    $("toast-text").textContent = text;
    el.setAttribute("data-kind", kind || "info");
    $("toast-action").textContent = actionLabel || "";
    show($("toast-action"), !!actionLabel);
    toastAction = action || null;
    show(el, true);
    clearTimeout(toastTimer);
    toastTimer = setTimeout(function () {
      show(el, false);
    }, actionLabel ? 9000 : 4500);
  }

  function upgradeUrl() {
    return state.upgradeUrl || (state.me && state.me.upgrade_url) || (state.pricing && state.pricing.upgrade_url) || settings.serverUrl.replace(/\/+$/, "") + "/pricing";
  }
  function openUpgrade() {
    host.openURL(upgradeUrl());
  }

  /** Counts down a Retry-After; Generate stays disabled until it reaches zero. */
  function startCountdown(secs, reason) {
    state.waitUntil = Date.now() + secs * 1000;
    clearInterval(state.countdown);
    function tick() {
      var left = Math.ceil((state.waitUntil - Date.now()) / 1000);
      if (left <= 0) {
        clearInterval(state.countdown);
        state.waitUntil = 0;
        hideBanner("wait");
        updateButtons();
        return;
      }
      banner("wait", reason + " Try again in " + left + " s.");
      $("banner").setAttribute("data-seconds", String(left));
    }
    tick();
    state.countdown = setInterval(tick, 1000);
    updateButtons();
  }

  /**
   * One place that turns any failure into what the editor sees. retry re-runs the failed action
   * (for a generation: the same request with the same Idempotency-Key).
   */
  function handleError(error, retry) {
    var code = error && error.code;
    if (code === "signed_out") return showSignIn(error.message);
    if (code === "network") {
      document.body.setAttribute("data-offline", "true");
      return banner("offline", "You're offline or the server can't be reached.", "Retry", function () {
        hideBanner("offline");
        if (retry) retry();
      });
    }
    if (error && error.status === 402) {
      state.upgradeUrl = (error.details && error.details.upgrade_url) || state.upgradeUrl;
      var needed = error.details && error.details.needed;
      var text = code === "payment_past_due" ? "Your last payment failed. Update your billing to keep generating." : "Not enough credits" + (needed ? " (this needs " + plural(needed, "credit") + ")" : "") + ".";
      state.emptyShown = false;
      banner("upgrade", text, "Upgrade", openUpgrade);
      return refreshAccount();
    }
    if (error && (error.status === 429 || error.status === 503)) {
      var wait = error.retryAfter || 30;
      return startCountdown(wait, error.status === 429 ? "Too many requests." : "The service is busy.");
    }
    if (code === "upstream_unavailable") {
      return banner("error", "The sound service didn't answer. Nothing was charged.", retry ? "Try again" : "", retry);
    }
    if (error instanceof SFX.CepAdapter.HostError) return toast(error.message, "error");
    banner("error", (error && error.message) || "Something went wrong.");
  }

  function online() {
    if (document.body.getAttribute("data-offline")) {
      document.body.removeAttribute("data-offline");
      hideBanner("offline");
    }
  }

  // ---- account, pricing, limits --------------------------------------------------------------

  function refreshAccount() {
    return api.me().then(
      function (me) {
        online();
        state.me = me;
        state.limits = Pricing.limits(me.plan);
        renderAccount();
        applyLimits();
        updateCosts();
      },
      function (error) {
        handleError(error, refreshAccount);
      }
    );
  }

  function loadPricing() {
    return api.pricing().then(
      function (pricing) {
        state.pricing = pricing;
        updateCosts();
      },
      function () {
        /* the built-in rules stand in until the next successful load */
      }
    );
  }

  function credits() {
    return (state.me && state.me.credits) || {};
  }

  function renderAccount() {
    var me = state.me;
    var c = credits();
    $("acct-plan").textContent = (me.plan && (me.plan.name || me.plan.code)) || "Plan";
    $("acct-plan").setAttribute("data-plan", (me.plan && me.plan.code) || "");
    if (c.unlimited) {
      $("acct-credits").textContent = "Unlimited";
    } else {
      $("acct-credits").textContent = plural(c.remaining || 0, "credit");
    }
    $("acct-period").textContent = c.period_end ? "· renews " + shortDate(c.period_end) : "";
    var empty = !c.unlimited && (c.remaining || 0) <= 0;
    document.body.setAttribute("data-credits", empty ? "empty" : "ok");
    show($("acct-upgrade"), empty || (me.plan && me.plan.code === "free"));
    if (empty) {
      state.emptyShown = true;
      banner("upgrade", "You're out of credits for this period.", "Upgrade", openUpgrade);
    } else if (state.emptyShown) {
      // Only the zero-balance prompt goes away with new credits; a 402's own prompt stays.
      state.emptyShown = false;
      hideBanner("upgrade");
    }
    $("settings-user").textContent = me.user ? me.user.email : "";
  }

  function setCredits(remaining) {
    if (!state.me || remaining === undefined || remaining === null) return;
    state.me.credits = Object.assign({}, state.me.credits, { remaining: remaining });
    renderAccount();
    updateCosts();
  }

  function applyLimits() {
    var l = state.limits;
    var opts = $("sfx-variations").options;
    for (var i = 0; i < opts.length; i++) {
      var locked = Number(opts[i].value) > l.max_variations;
      opts[i].disabled = locked;
    }
    $("sfx-variations").title = l.max_variations < 4 ? "Your plan allows up to " + l.max_variations + "; upgrade for more" : "";
    if (Number($("sfx-variations").value) > l.max_variations) $("sfx-variations").value = String(l.max_variations);
    var slider = $("sfx-duration");
    slider.max = String(Math.min(30, l.max_sfx_seconds));
    if (Number(slider.value) > Number(slider.max)) slider.value = slider.max;
    $("voice-text").maxLength = l.max_voice_chars;
    showDuration();
  }

  function sfxRequest() {
    var auto = $("sfx-auto").checked;
    return {
      prompt: $("sfx-prompt").value.trim(),
      duration_seconds: auto ? null : Number($("sfx-duration").value),
      prompt_influence: Number($("sfx-influence").value),
      loop: $("sfx-loop").checked,
      variations: Number($("sfx-variations").value),
      format: "wav",
      bit_depth: Number(settings.bitDepth) === 24 ? 24 : 16,
    };
  }

  function voiceRequest() {
    return {
      text: $("voice-text").value.trim(),
      voice_id: $("voice-voice").value,
      model_id: $("voice-model").value,
      voice_settings: {
        stability: Number($("voice-stability").value),
        similarity_boost: Number($("voice-similarity").value),
        style: Number($("voice-style").value),
        speed: Number($("voice-speed").value),
        use_speaker_boost: $("voice-boost").checked,
      },
      format: "wav",
      bit_depth: Number(settings.bitDepth) === 24 ? 24 : 16,
    };
  }

  function costText(cost) {
    var c = credits();
    var text = "Costs " + plural(cost, "credit");
    if (!state.me) return { text: text, short: false };
    if (c.unlimited) return { text: text, short: false };
    var left = c.remaining || 0;
    return cost > left ? { text: "Needs " + plural(cost, "credit") + " · " + left + " left", short: true } : { text: text + " · " + left + " left", short: false };
  }

  function updateCosts() {
    var sfx = sfxRequest();
    var sfxCost = costText(Pricing.quoteSfx(state.pricing, { duration: sfx.duration_seconds, variations: sfx.variations }));
    $("sfx-cost").textContent = sfxCost.text;
    $("sfx-cost").title = sfx.duration_seconds === null ? Pricing.autoHint(state.pricing) : "";
    $("sfx-cost").classList.toggle("short", sfxCost.short);
    var chars = $("voice-text").value.trim().length;
    var voiceCost = costText(Pricing.quoteVoice(state.pricing, chars));
    $("voice-cost").textContent = chars ? voiceCost.text : "Type a script to see its cost";
    $("voice-cost").classList.toggle("short", chars > 0 && voiceCost.short);
    $("voice-count").textContent = chars + " / " + state.limits.max_voice_chars;
    $("voice-count").classList.toggle("short", chars > state.limits.max_voice_chars);
    updateButtons();
  }

  function updateButtons() {
    var waiting = state.waitUntil > Date.now();
    var sfxReady = !!$("sfx-prompt").value.trim();
    var voiceReady = !!$("voice-text").value.trim() && !!$("voice-voice").value && state.limits.voice !== false;
    $("sfx-generate").disabled = !!state.busy || waiting || !sfxReady;
    $("voice-generate").disabled = !!state.busy || waiting || !voiceReady;
  }

  function showDuration() {
    var auto = $("sfx-auto").checked;
    $("sfx-duration").disabled = auto;
    $("sfx-duration-out").textContent = auto ? "Auto" : seconds(Number($("sfx-duration").value));
    $("sfx-influence-out").textContent = Math.round(Number($("sfx-influence").value) * 100) + "%";
  }

  // ---- generation -----------------------------------------------------------------------------

  function setBusy(kind, controller) {
    var started = Date.now();
    state.busy = { kind: kind, controller: controller, phase: "generating", timer: 0, timedOut: false };
    var text = $(kind + "-progress-text");
    function tick() {
      var secs = Math.floor((Date.now() - started) / 1000);
      text.textContent = (state.busy && state.busy.phase === "saving" ? "Saving" : "Generating") + "… " + secs + " s";
    }
    tick();
    state.busy.timer = setInterval(tick, 500);
    state.busy.deadline = setTimeout(function () {
      if (state.busy && state.busy.controller === controller) {
        state.busy.timedOut = true;
        controller.abort();
      }
    }, CLIENT_TIMEOUT_MS);
    show($(kind + "-progress"), true);
    document.body.setAttribute("data-busy", kind);
    updateButtons();
  }

  function clearBusy() {
    if (!state.busy) return;
    clearInterval(state.busy.timer);
    clearTimeout(state.busy.deadline);
    show($(state.busy.kind + "-progress"), false);
    state.busy = null;
    document.body.removeAttribute("data-busy");
    updateButtons();
  }

  function cancelGeneration() {
    if (state.busy) state.busy.controller.abort();
  }

  /** Folder for new files: needs the project path, so ask the host (and never fail because of it). */
  function outputFolder() {
    return host.getContext().then(
      function (ctx) {
        return files.folderFor(settings.folder, ctx && ctx.project && ctx.project.path);
      },
      function () {
        return files.folderFor(settings.folder, "");
      }
    );
  }

  /** Downloads a generation's audio (never charged) and writes it beside the project. */
  function saveGeneration(gen, signal, folder) {
    return api.audio(gen.download_url || gen.id, signal).then(function (bytes) {
      if (!files) return { gen: gen, path: null, bytes: bytes };
      var name = gen.filename || Files.nameFromPrompt(gen.prompt || gen.text, gen.format || "wav");
      return folder
        .then(function (dir) {
          return files.writeUnique(dir, name, bytes);
        })
        .then(function (path) {
          rememberLocal(gen.id, path);
          return { gen: gen, path: path, bytes: bytes };
        });
    });
  }

  /**
   * Generates, downloads and shows the results. `request` is the exact body: retrying it after a
   * network error reuses its Idempotency-Key, so the server never charges twice.
   */
  function generate(kind, request) {
    if (state.busy || state.waitUntil > Date.now()) return;
    var body = request || (kind === "voice" ? voiceRequest() : sfxRequest());
    if (kind === "sfx" && !body.prompt) return $("sfx-prompt").focus();
    if (kind === "voice" && (!body.text || !body.voice_id)) return $("voice-text").focus();
    hideBanner("error");
    var key = keys.keyFor(kind, body);
    var controller = new AbortController();
    setBusy(kind, controller);
    var busy = state.busy;
    var folder = files ? outputFolder() : null;
    api
      .generate(kind, body, key, controller.signal)
      .then(function (doc) {
        keys.settle(null);
        online();
        busy.phase = "saving";
        if (doc.credits) setCredits(doc.credits.remaining);
        var gens = doc.generations || [];
        return Promise.all(
          gens.map(function (gen) {
            return saveGeneration(gen, controller.signal, folder);
          })
        ).then(function (saved) {
          for (var i = saved.length - 1; i >= 0; i--) addResult(kind, saved[i], body);
          var charged = doc.credits && doc.credits.charged;
          var failed = (doc.failed || []).length;
          var text = (saved.length > 1 ? plural(saved.length, "variation") + " ready" : saved.length ? "Ready" : "Nothing came back");
          if (charged !== undefined) text += " · " + plural(charged, "credit") + " used";
          if (failed) text += " · " + plural(failed, "variation") + " failed (not charged)";
          toast(text, failed ? "error" : "ok");
        });
      })
      .catch(function (error) {
        if (busy.timedOut) error = new Api.ApiError(0, "network", "The server took too long to answer.");
        keys.settle(error);
        if (error.code === "idempotency_in_progress") {
          // The server is still finishing this very request (a retry came early): ask again shortly.
          banner("wait", "Still finishing your previous request…");
          setTimeout(function () {
            hideBanner("wait");
            generate(kind, body);
          }, 3000);
          return;
        }
        if (error.code === "cancelled") {
          toast(busy.phase === "saving" ? "Stopped. The sound is kept in History." : "Cancelled. Nothing was charged.", "info");
          setTimeout(refreshAccount, 800);
          return;
        }
        handleError(error, function () {
          generate(kind, body);
        });
      })
      .then(clearBusy, clearBusy);
  }

  // ---- results ---------------------------------------------------------------------------------

  function addResult(kind, saved, body) {
    var gen = saved.gen;
    var node = $("tpl-result").content.firstElementChild.cloneNode(true);
    var list = $(kind + "-results");
    var duration = Number(gen.duration_seconds) || 0;
    node.setAttribute("data-id", gen.id);
    if (saved.path) node.setAttribute("data-path", saved.path);
    node.querySelector(".result-name").textContent = saved.path ? basename(saved.path) : gen.filename || "sound.wav";
    node.querySelector(".result-name").title = saved.path || "";
    var sub = [seconds(duration), plural(Number(gen.credits) || 0, "credit")];
    if (body.variations > 1 && gen.variation !== undefined) sub.push("variation " + (Number(gen.variation) + 1));
    node.querySelector(".result-sub").textContent = sub.join(" · ");
    list.insertBefore(node, list.firstChild);
    while (list.children.length > MAX_RESULTS) list.removeChild(list.lastChild);

    var playBtn = node.querySelector(".play");
    var view = new SFX.Waveform.View(node.querySelector(".wave"), function (playing) {
      playBtn.querySelector("use").setAttribute("href", playing ? "#i-stop" : "#i-play");
      playBtn.setAttribute("aria-label", playing ? "Stop" : "Play");
      node.classList.toggle("playing", playing);
    });
    SFX.Waveform.decode(saved.bytes).then(
      function (buffer) {
        // The server measured the file; the decoder's figure is only a fallback.
        duration = duration || buffer.duration;
        view.render(buffer);
        node.setAttribute("data-ready", "true");
      },
      function () {
        node.setAttribute("data-ready", "error");
        node.querySelector(".result-sub").textContent += " · preview unavailable";
      }
    );
    on(playBtn, "click", function () {
      view.toggle();
    });
    on(node, "themechange", function () {
      view.redraw();
    });
    on(node, "dragstart", function (event) {
      if (!saved.path) return event.preventDefault();
      event.dataTransfer.effectAllowed = "copy";
      event.dataTransfer.setData("com.adobe.cep.dnd.file.0", saved.path);
      event.dataTransfer.setData("text/plain", saved.path);
    });
    on(node.querySelector(".result-actions"), "click", function (event) {
      var button = event.target.closest("button[data-act]");
      if (!button) return;
      var act = button.getAttribute("data-act");
      if (act === "again") return generate(kind, Object.assign({}, body, { variations: 1 }));
      if (!saved.path) return toast("Saving files needs Premiere Pro (Node.js is not available here).", "error");
      if (act === "insert") insert(saved.path, duration, button);
      else if (act === "bin") importToBin(saved.path, button);
      else if (act === "reveal") host.revealFile(saved.path).catch(handleError);
    });
  }

  function withButton(button, promise) {
    if (button) button.disabled = true;
    return promise.then(
      function (v) {
        if (button) button.disabled = false;
        return v;
      },
      function (e) {
        if (button) button.disabled = false;
        throw e;
      }
    );
  }

  function insert(path, duration, button) {
    var options = { duration: duration, bin: settings.bin, track: settings.track === "auto" ? "auto" : Number(settings.track) };
    if (state.markerTime !== null) options.time = state.markerTime;
    return withButton(button, host.importAndPlace(path, options)).then(
      function (r) {
        if (r.placed) toast("Placed on " + r.trackName + " at " + clock(r.time) + ".", "ok");
        else toast(r.message, "info");
      },
      function (error) {
        if (error.code === "no_free_track" || error.code === "track_occupied" || error.code === "track_locked") {
          return toast(error.message, "error", "Import to bin", function () {
            importToBin(path);
          });
        }
        handleError(error);
      }
    );
  }

  function importToBin(path, button) {
    return withButton(button, host.importToBin(path, settings.bin)).then(
      function (r) {
        toast((r.imported ? "Imported into " : "Already in ") + "the bin \u201c" + r.bin + "\u201d.", "ok");
      },
      function (error) {
        handleError(error);
      }
    );
  }

  // ---- markers -----------------------------------------------------------------------------------

  function loadMarkers() {
    var select = $("sfx-marker");
    host.getMarkers().then(
      function (r) {
        select.length = 1;
        if (!r.markers.length) select.options[0].textContent = "No markers in " + r.sequence;
        else select.options[0].textContent = "From marker…";
        r.markers.forEach(function (m, i) {
          var label = clock(m.time) + "  " + (m.name || m.comments || "Marker " + (i + 1));
          var opt = new Option(label.length > 48 ? label.slice(0, 47) + "…" : label, String(i));
          opt.marker = m;
          select.add(opt);
        });
      },
      function (error) {
        select.length = 1;
        select.options[0].textContent = error.code === "no_sequence" ? "Open a sequence for markers" : "Markers unavailable";
      }
    );
  }

  function useMarker() {
    var select = $("sfx-marker");
    var opt = select.options[select.selectedIndex];
    if (!opt || !opt.marker) return;
    var m = opt.marker;
    var text = m.comments || m.name;
    if (text) $("sfx-prompt").value = text;
    state.markerTime = m.time;
    $("sfx-marker-text").textContent = "Inserts at marker " + clock(m.time) + (m.name ? " (" + m.name + ")" : "");
    show($("sfx-marker-chip"), true);
    select.value = "";
    updateCosts();
  }

  // ---- voice --------------------------------------------------------------------------------------

  var preview = null;
  function loadVoices() {
    var select = $("voice-voice");
    return api.voices().then(
      function (r) {
        online();
        state.voices = r.voices || [];
        select.length = 0;
        state.voices.forEach(function (v) {
          var labels = v.labels ? [v.labels.accent, v.labels.gender, v.labels.age].filter(Boolean).join(", ") : "";
          select.add(new Option(v.name + (labels ? " \u2014 " + labels : ""), v.voice_id));
        });
        if (!state.voices.length) select.add(new Option("No voices available", ""));
        if (state.limits.voice === false) banner("upgrade", "Voice-over is not included in your plan.", "Upgrade", openUpgrade);
        updateButtons();
      },
      function (error) {
        select.length = 0;
        select.add(new Option("Voices unavailable", ""));
        handleError(error, loadVoices);
      }
    );
  }

  function togglePreview() {
    var button = $("voice-preview");
    if (preview) {
      preview.pause();
      preview = null;
      button.querySelector("use").setAttribute("href", "#i-play");
      return;
    }
    var voice = (state.voices || []).filter(function (v) {
      return v.voice_id === $("voice-voice").value;
    })[0];
    if (!voice || !voice.preview_url) return toast("This voice has no preview.", "info");
    preview = new Audio(api.url(voice.preview_url));
    preview.onended = preview.onerror = function () {
      preview = null;
      button.querySelector("use").setAttribute("href", "#i-play");
    };
    button.querySelector("use").setAttribute("href", "#i-stop");
    preview.play().catch(function () {
      toast("Couldn't play the preview.", "error");
    });
  }

  // ---- history -----------------------------------------------------------------------------------

  function loadHistory(reset) {
    var h = state.history;
    if (h.loading) return;
    if (reset) {
      h.cursor = null;
      $("history-list").textContent = "";
    }
    h.loading = true;
    api
      .history({ kind: h.kind, cursor: h.cursor, limit: 20 })
      .then(
        function (page) {
          online();
          (page.items || []).forEach(addHistoryItem);
          h.cursor = page.next_cursor || null;
          show($("history-more"), !!h.cursor);
          show($("history-empty"), !$("history-list").children.length);
        },
        function (error) {
          handleError(error, function () {
            loadHistory(reset);
          });
        }
      )
      .then(function () {
        h.loading = false;
      });
  }

  /** The local copy when it still exists, else a fresh download (no charge) saved like a new result. */
  function ensureLocal(item) {
    var known = localPath(item.id);
    var check = files ? files.exists(known) : Promise.resolve(false);
    return check.then(function (exists) {
      if (exists) return known;
      if (!files) throw new SFX.CepAdapter.HostError("no_files", "Saving files needs Premiere Pro (Node.js is not available here).");
      return saveGeneration(item, undefined, outputFolder()).then(function (saved) {
        return saved.path;
      });
    });
  }

  var historyAudio = null;
  function addHistoryItem(item) {
    var node = $("tpl-history").content.firstElementChild.cloneNode(true);
    var duration = Number(item.duration_seconds) || 0;
    node.setAttribute("data-id", item.id);
    node.querySelector(".kind use").setAttribute("href", item.kind === "voice" ? "#i-voice" : "#i-wave");
    node.querySelector(".history-title").textContent = item.prompt || item.text || item.filename || "Untitled";
    node.querySelector(".history-title").title = item.prompt || item.text || "";
    node.querySelector(".history-sub").textContent = [seconds(duration), plural(Number(item.credits) || 0, "credit"), dateTime(item.created_at)].join(" · ");
    on(node, "click", function (event) {
      var button = event.target.closest("button[data-act]");
      if (!button) return;
      var act = button.getAttribute("data-act");
      if (act === "delete") return deleteHistory(item, node, button);
      if (act === "play") return playHistory(item, button);
      withButton(button, ensureLocal(item)).then(
        function (path) {
          if (act === "insert") return insert(path, duration);
          return importToBin(path);
        },
        function (error) {
          handleError(error);
        }
      );
    });
    $("history-list").appendChild(node);
  }

  function playHistory(item, button) {
    if (historyAudio) {
      var same = historyAudio.id === item.id;
      historyAudio.audio.pause();
      historyAudio.button.querySelector("use").setAttribute("href", "#i-play");
      historyAudio = null;
      if (same) return;
    }
    withButton(button, ensureLocal(item).then(files.read.bind(files))).then(
      function (bytes) {
        var audio = new Audio(URL.createObjectURL(new Blob([bytes], { type: "audio/wav" })));
        historyAudio = { id: item.id, audio: audio, button: button };
        button.querySelector("use").setAttribute("href", "#i-stop");
        audio.onended = function () {
          button.querySelector("use").setAttribute("href", "#i-play");
          historyAudio = null;
        };
        audio.play();
      },
      function (error) {
        handleError(error);
      }
    );
  }

  function deleteHistory(item, node, button) {
    // Two clicks: the first arms the button for three seconds.
    if (!button.classList.contains("armed")) {
      button.classList.add("armed");
      button.title = "Click again to delete";
      setTimeout(function () {
        button.classList.remove("armed");
        button.title = "Delete";
      }, 3000);
      return;
    }
    withButton(button, api.deleteGeneration(item.id)).then(
      function () {
        node.remove();
        show($("history-empty"), !$("history-list").children.length);
      },
      function (error) {
        handleError(error);
      }
    );
  }

  // ---- settings --------------------------------------------------------------------------------

  function openSettings() {
    $("set-folder").value = settings.folder;
    $("set-bin").value = settings.bin;
    $("set-bits").value = String(settings.bitDepth);
    $("set-server").value = settings.serverUrl;
    $("set-folder").placeholder = "Beside the project, else Documents/AI SFX";
    $("set-folder-hint").textContent = files ? "Empty: next to the saved project, else Documents/AI SFX." : "File access needs Premiere Pro.";
    var track = $("set-track");
    track.length = 1;
    var current = String(settings.track);
    host.getContext().then(
      function (ctx) {
        var tracks = (ctx.sequence && ctx.sequence.audioTracks) || [];
        tracks.forEach(function (t) {
          track.add(new Option(t.name + (t.locked ? " (locked)" : ""), String(t.index)));
        });
        if (current !== "auto" && !tracks[Number(current)]) track.add(new Option("A" + (Number(current) + 1), current));
        track.value = current;
      },
      function () {
        if (current !== "auto") track.add(new Option("A" + (Number(current) + 1), current));
        track.value = current;
      }
    );
    $("settings-version").textContent = "SFX Studio panel " + (document.documentElement.getAttribute("data-version") || "") + " · " + host.info().adapter;
    showView("settings");
  }

  function saveSettingsForm() {
    var server = $("set-server").value.trim().replace(/\/+$/, "") || DEFAULTS.serverUrl;
    var serverChanged = server !== settings.serverUrl;
    settings.folder = $("set-folder").value.trim();
    settings.bin = $("set-bin").value.trim() || DEFAULTS.bin;
    settings.track = $("set-track").value;
    settings.bitDepth = Number($("set-bits").value);
    settings.serverUrl = server;
    saveSettings();
    api.baseUrl = server;
    if (serverChanged) {
      // Tokens belong to the old server.
      api.tokens.clear();
      return showSignIn("Sign in to " + server.replace(/^https?:\/\//, "") + ".");
    }
    showView("main");
    updateCosts();
  }

  function signOut() {
    api.logout().then(function () {
      showSignIn("");
    });
  }

  // ---- events ------------------------------------------------------------------------------------

  function bind() {
    on($("signin-form"), "submit", function (event) {
      event.preventDefault();
      var email = $("signin-email").value.trim();
      var password = $("signin-password").value;
      var server = $("signin-server").value.trim().replace(/\/+$/, "");
      if (!email || !password) return setSignInError("Enter your email and password.");
      if (server && server !== settings.serverUrl) {
        settings.serverUrl = server;
        api.baseUrl = server;
        saveSettings();
      }
      $("signin-submit").disabled = true;
      setSignInError("");
      api
        .login(email, password, deviceName())
        .then(
          function () {
            $("signin-password").value = "";
            enterMain();
          },
          function (error) {
            if (error.code === "network") setSignInError("Can't reach " + settings.serverUrl + ". Check the server address and your connection.");
            else if (error.status === 429) setSignInError("Too many attempts. Try again in " + (error.retryAfter || 60) + " s.");
            else if (error.status === 401) setSignInError(error.code === "account_suspended" ? error.message : "Email or password is not right.");
            else setSignInError(error.message);
          }
        )
        .then(function () {
          $("signin-submit").disabled = false;
        });
    });
    on($("signin-signup"), "click", function (event) {
      event.preventDefault();
      host.openURL(($("signin-server").value.trim() || settings.serverUrl).replace(/\/+$/, "") + "/signup");
    });

    var tabs = document.querySelectorAll("[data-tab]");
    for (var i = 0; i < tabs.length; i++) {
      on(tabs[i], "click", function (event) {
        selectTab(event.currentTarget.getAttribute("data-tab"));
      });
    }

    on($("banner-action"), "click", function () {
      if (bannerAction) bannerAction();
    });
    on($("banner-close"), "click", function () {
      hideBanner();
    });
    on($("toast-action"), "click", function () {
      show($("toast"), false);
      if (toastAction) toastAction();
    });
    on($("acct-upgrade"), "click", openUpgrade);
    on($("btn-settings"), "click", openSettings);
    on($("settings-close"), "click", function () {
      showView("main");
    });
    on($("settings-form"), "submit", function (event) {
      event.preventDefault();
      saveSettingsForm();
    });
    on($("settings-signout"), "click", signOut);
    on($("settings-manage"), "click", function () {
      host.openURL(settings.serverUrl.replace(/\/+$/, "") + "/dashboard");
    });

    // SFX form: Enter generates (Shift+Enter is a new line), as does Cmd/Ctrl+Enter anywhere in it.
    on($("sfx-form"), "submit", function (event) {
      event.preventDefault();
      generate("sfx");
    });
    on($("sfx-form"), "keydown", function (event) {
      if (event.key !== "Enter" || event.isComposing) return;
      if (event.target.id === "sfx-prompt" && event.shiftKey) return;
      if (event.target.tagName === "SELECT" || event.target.tagName === "BUTTON") return;
      event.preventDefault();
      generate("sfx");
    });
    ["sfx-prompt", "sfx-duration", "sfx-auto", "sfx-influence", "sfx-loop", "sfx-variations"].forEach(function (id) {
      on($(id), "input", function () {
        showDuration();
        updateCosts();
      });
      on($(id), "change", function () {
        showDuration();
        updateCosts();
      });
    });
    on($("sfx-cancel"), "click", cancelGeneration);
    on($("voice-cancel"), "click", cancelGeneration);
    on($("sfx-marker"), "focus", loadMarkers);
    on($("sfx-marker"), "change", useMarker);
    on($("sfx-marker-clear"), "click", function () {
      state.markerTime = null;
      show($("sfx-marker-chip"), false);
    });

    // Voice form: a script has line breaks, so only Cmd/Ctrl+Enter generates.
    on($("voice-form"), "submit", function (event) {
      event.preventDefault();
      generate("voice");
    });
    on($("voice-form"), "keydown", function (event) {
      if (event.key === "Enter" && (event.metaKey || event.ctrlKey)) {
        event.preventDefault();
        generate("voice");
      }
    });
    on($("voice-text"), "input", updateCosts);
    on($("voice-voice"), "change", updateButtons);
    on($("voice-preview"), "click", togglePreview);
    var outs = document.querySelectorAll("[data-out]");
    for (var j = 0; j < outs.length; j++) {
      (function (out) {
        var input = $(out.getAttribute("data-out"));
        function render() {
          out.textContent = input.id === "voice-speed" ? Number(input.value).toFixed(2) + "\u00d7" : Math.round(Number(input.value) * 100) + "%";
        }
        on(input, "input", render);
        render();
      })(outs[j]);
    }

    var kinds = document.querySelectorAll(".segmented [data-kind]");
    for (var k = 0; k < kinds.length; k++) {
      on(kinds[k], "click", function (event) {
        for (var n = 0; n < kinds.length; n++) kinds[n].setAttribute("aria-pressed", String(kinds[n] === event.currentTarget));
        state.history.kind = event.currentTarget.getAttribute("data-kind");
        loadHistory(true);
      });
    }
    on($("history-refresh"), "click", function () {
      loadHistory(true);
    });
    on($("history-more"), "click", function () {
      loadHistory(false);
    });

    on(document, "keydown", function (event) {
      if (event.key !== "Escape") return;
      if (state.busy) {
        event.preventDefault();
        cancelGeneration();
      } else if (document.body.getAttribute("data-view") === "settings") {
        showView("main");
      }
    });
    // A sleeping laptop or a dropped network: check again when the panel comes back.
    on(window, "online", function () {
      if (state.me) refreshAccount();
    });
    var lastFocusRefresh = 0;
    on(window, "focus", function () {
      if (!state.me || state.busy || Date.now() - lastFocusRefresh < 30000) return;
      lastFocusRefresh = Date.now();
      refreshAccount();
    });
  }

  function start() {
    SFX.Theme.apply(host.getTheme());
    host.onThemeChange(function (theme) {
      SFX.Theme.apply(theme);
      var waves = document.querySelectorAll(".result");
      for (var i = 0; i < waves.length; i++) waves[i].dispatchEvent(new Event("themechange"));
    });
    bind();
    showDuration();
    if (api.isSignedIn()) enterMain();
    else showSignIn("");
  }

  start();
})();
