/*
 * One generation from Generate to files on disk: the request (with its Idempotency-Key), progress
 * in phases (generating, downloading with a real percentage, saving), cancel, and the client-side
 * deadline. Results are handed to the results view.
 */
(function () {
  "use strict";
  var SFX = window.SFX;
  var D = SFX.Dom;
  var $ = D.$;
  var F = SFX.Format;
  // Past the server's own upstream deadline a request is treated as lost (and retried with its key).
  var CLIENT_TIMEOUT_MS = 180000;
  // A generation normally answers within two seconds; longer, and it may be waiting for a free generator.
  var WAIT_NOTICE_MS = 3000;
  var QUEUE_POLL_MS = 2000;

  SFX.Views.Generate = {
    mount: function (ctx) {
      var state = ctx.state;
      var controller = null;
      var timer = 0;
      var deadline = 0;

      function renderProgress(v) {
        var busy = v.busy;
        ["sfx", "voice"].forEach(function (kind) {
          D.show($(kind + "-progress"), !!busy && busy.kind === kind);
        });
        if (!busy) return document.body.removeAttribute("data-busy");
        document.body.setAttribute("data-busy", busy.kind);
        var bar = $(busy.kind + "-progress-bar");
        var text = $(busy.kind + "-progress-text");
        var secs = Math.floor((Date.now() - busy.started) / 1000);
        $(busy.kind + "-progress").setAttribute("data-phase", busy.phase);
        if (busy.phase === "downloading" && busy.total) {
          var pct = Math.min(100, Math.round((busy.received / busy.total) * 100));
          bar.classList.add("determinate");
          bar.style.width = pct + "%";
          text.textContent = "Downloading " + pct + "%";
        } else if (busy.phase === "generating" && busy.waiting) {
          bar.classList.remove("determinate");
          bar.style.width = "";
          var ahead = busy.waiting.ahead ? " · " + busy.waiting.ahead + " ahead" : "";
          text.textContent = "Waiting for a free generator… " + secs + " s" + ahead;
        } else {
          bar.classList.remove("determinate");
          bar.style.width = "";
          text.textContent = (busy.phase === "saving" ? "Saving" : busy.phase === "downloading" ? "Downloading" : "Generating") + "… " + secs + " s";
        }
        $(busy.kind + "-progress").setAttribute("data-waiting", String(!!(busy.phase === "generating" && busy.waiting)));
      }

      function patchBusy(patch) {
        var busy = state.get("busy");
        if (busy) state.set({ busy: Object.assign({}, busy, patch) });
      }

      function setBusy(kind, ctrl) {
        controller = ctrl;
        state.set({ busy: { kind: kind, phase: "generating", started: Date.now(), received: 0, total: 0, timedOut: false } });
        var asked = 0;
        timer = setInterval(function () {
          var busy = state.get("busy");
          if (busy && busy.phase === "generating" && Date.now() - busy.started >= WAIT_NOTICE_MS && Date.now() - asked >= QUEUE_POLL_MS) {
            asked = Date.now();
            askQueue(ctrl);
          }
          renderProgress(state.values);
        }, 500);
        deadline = setTimeout(function () {
          if (controller === ctrl) {
            patchBusy({ timedOut: true });
            ctrl.abort();
          }
        }, CLIENT_TIMEOUT_MS);
      }

      /**
       * No answer yet: the server may be holding the request until a generator frees up, and says so
       * (GET /v1/queue). When it cannot say (an older server, or the question failed), three seconds
       * without an answer are taken as waiting, the usual reason for them.
       */
      function askQueue(ctrl) {
        ctx.api.queue().then(
          function (q) {
            if (controller === ctrl) patchBusy({ waiting: q.waiting > 0 ? { ahead: q.ahead || 0 } : null });
          },
          function () {
            if (controller === ctrl) patchBusy({ waiting: { ahead: 0 } });
          }
        );
      }

      function clearBusy() {
        clearInterval(timer);
        clearTimeout(deadline);
        controller = null;
        state.set({ busy: null });
      }

      function cancelGeneration() {
        if (controller) controller.abort();
      }

      /**
       * An AbortController whose abort also settles `cancelled`: where the runtime cannot abort a
       * fetch (a UXP without AbortController) the panel still stops waiting at once.
       */
      function makeController() {
        var native = typeof AbortController !== "undefined" ? new AbortController() : null;
        var reject = null;
        var cancelled = new Promise(function (_, r) {
          reject = r;
        });
        cancelled.catch(function () {});
        return {
          signal: native ? native.signal : undefined,
          cancelled: cancelled,
          abort: function () {
            if (native) native.abort();
            reject(new SFX.Api.ApiError(0, "cancelled", "Cancelled."));
          },
        };
      }

      /** Folder for new files: needs the project path, so ask the host (and never fail because of it). */
      function outputFolder() {
        return ctx.host.getContext().then(
          function (c) {
            state.set({ sequence: c.sequence });
            return ctx.files.folderFor(ctx.settings.folder, c && c.project && c.project.path);
          },
          function () {
            return ctx.files.folderFor(ctx.settings.folder, "");
          }
        );
      }

      /** Downloads a generation's audio (never charged) and writes it to the output folder. */
      function saveGeneration(gen, signal, folder) {
        return ctx.api
          .audio(gen.download_url || gen.id, signal, function (received, total) {
            patchBusy({ phase: "downloading", received: received, total: total });
          })
          .then(function (bytes) {
            if (!ctx.files) return { gen: gen, path: null, bytes: bytes };
            patchBusy({ phase: "saving" });
            var name = gen.filename || SFX.Files.nameFromPrompt(gen.prompt || gen.text, gen.format || "wav");
            return Promise.resolve(folder || outputFolder())
              .then(function (dir) {
                return ctx.files.writeUnique(dir, name, bytes);
              })
              .then(function (path) {
                ctx.local.remember(gen.id, path);
                return { gen: gen, path: path, bytes: bytes };
              });
          });
      }

      /**
       * Generates, downloads and shows the results. `request` is the exact body: retrying it after a
       * network error reuses its Idempotency-Key, so the server never charges twice. `at` is where
       * the results insert: a marker picked on the SFX form, else the playhead (null).
       */
      function generate(kind, request, at) {
        if (SFX.State.generateBlock(state.values)) return;
        var body = request || (kind === "voice" ? ctx.voiceRequest() : ctx.sfxRequest());
        if (kind === "sfx" && !body.prompt) return $("sfx-prompt").focus();
        if (kind === "voice" && (!body.text || !body.voice_id)) return $("voice-text").focus();
        if (at === undefined) at = kind === "sfx" ? state.get("marker") : null;
        ctx.hideBanner("error");
        var key = ctx.keys.keyFor(kind, body);
        var ctrl = makeController();
        setBusy(kind, ctrl);
        var folder = ctx.files ? outputFolder() : null;
        Promise.race([ctx.api.generate(kind, body, key, ctrl.signal), ctrl.cancelled])
          .then(function (doc) {
            ctx.keys.settle(null);
            ctx.online();
            patchBusy({ phase: "downloading" });
            if (doc.credits) ctx.setCredits(doc.credits.remaining);
            var gens = doc.generations || [];
            var saving = Promise.all(
              gens.map(function (gen) {
                return saveGeneration(gen, ctrl.signal, folder);
              })
            );
            return Promise.race([saving, ctrl.cancelled]).then(function (saved) {
              for (var i = saved.length - 1; i >= 0; i--) ctx.addResult(kind, saved[i], body, at);
              var charged = doc.credits && doc.credits.charged;
              var failed = (doc.failed || []).length;
              var text = saved.length > 1 ? F.plural(saved.length, "variation") + " ready" : saved.length ? "Ready" : "Nothing came back";
              if (charged !== undefined) text += " · " + F.plural(charged, "credit") + " used";
              if (failed) text += " · " + F.plural(failed, "variation") + " failed (not charged)";
              ctx.toast(text, failed ? "error" : "ok");
            });
          })
          .catch(function (error) {
            var busy = state.get("busy") || {};
            if (busy.timedOut) error = new SFX.Api.ApiError(0, "network", "The server took too long to answer.");
            ctx.keys.settle(error);
            if (error.code === "idempotency_in_progress") {
              // The server is still finishing this very request (a retry came early): ask again shortly.
              ctx.banner("wait", "Still finishing your previous request…");
              setTimeout(function () {
                ctx.hideBanner("wait");
                generate(kind, body, at);
              }, 3000);
              return;
            }
            if (error.code === "cancelled") {
              ctx.toast(busy.phase === "generating" ? "Cancelled. Nothing was charged." : "Stopped. The sound is kept in History.", "info");
              setTimeout(ctx.refreshAccount, 800);
              return;
            }
            ctx.handleError(error, function () {
              generate(kind, body, at);
            });
          })
          .then(clearBusy, clearBusy);
      }

      state.subscribe(["busy"], renderProgress);
      ctx.generate = generate;
      ctx.cancelGeneration = cancelGeneration;
      ctx.saveGeneration = saveGeneration;
      ctx.outputFolder = outputFolder;
    },
  };
})();
