/*
 * Spotting from markers: the sequence's markers (through the host adapter) go to POST /v1/assist/spot,
 * the proposed cues are listed with their credit cost to untick or edit, then each ticked cue is
 * generated, saved and placed at its time on a free audio track, one after another, with progress
 * and Cancel. A cue that fails says why on its own row; the others go on.
 */
(function () {
  "use strict";
  var SFX = window.SFX;
  var D = SFX.Dom;
  var $ = D.$;
  var F = SFX.Format;
  // Where a cue cannot go on: the session ended, the panel is outdated, or the editor cancelled.
  var STOPS = ["signed_out", "cancelled", "panel_outdated"];

  SFX.Views.Spot = {
    mount: function (ctx) {
      var state = ctx.state;
      var cues = [];
      var running = null;
      var keys = new SFX.Api.KeyRing(SFX.Api.uuid);

      function fps() {
        var seq = state.get("sequence");
        return seq && seq.frameRate;
      }
      function say(text) {
        $("spot-status").textContent = text;
      }
      function costOf(cue) {
        return SFX.Pricing.quoteSfx(state.get("pricing"), { duration: cue.duration_seconds, variations: 1 });
      }
      function pending() {
        return cues.filter(function (c) {
          return c.on && c.prompt.trim() && c.status !== "placed";
        });
      }

      function renderTotals() {
        var todo = pending();
        var total = todo.reduce(function (sum, c) {
          return sum + costOf(c);
        }, 0);
        $("spot-cost").textContent = todo.length ? F.plural(todo.length, "cue") + " · " + F.plural(total, "credit") : "No cue ticked";
        $("spot-generate").textContent = todo.length ? "Generate " + F.plural(todo.length, "cue") : "Generate cues";
        $("spot-generate").disabled = !todo.length || !!running || !!SFX.State.generateBlock(state.values);
        cues.forEach(function (c) {
          c.node.querySelector(".cue-cost").textContent = F.plural(costOf(c), "credit");
        });
      }

      function setStatus(cue, status, text) {
        cue.status = status;
        cue.node.setAttribute("data-status", status);
        cue.node.querySelector(".cue-status").textContent = text;
      }

      function row(cue) {
        var node = SFX.Markup.spotCue();
        cue.node = node;
        node.querySelector(".cue-time").textContent = F.timecode(cue.time, fps());
        node.querySelector(".cue-prompt").value = cue.prompt;
        node.querySelector(".cue-duration").value = String(cue.duration_seconds);
        node.querySelector(".cue-loop").checked = cue.loop;
        node.querySelector(".cue-note").textContent = cue.note + (cue.clamped ? " (moved inside the sequence)" : "");
        D.on(node, "input", function () {
          cue.on = node.querySelector(".cue-on").checked;
          cue.prompt = node.querySelector(".cue-prompt").value;
          var d = Number(node.querySelector(".cue-duration").value);
          if (d >= 0.5 && d <= 30) cue.duration_seconds = d;
          cue.loop = node.querySelector(".cue-loop").checked;
          renderTotals();
        });
        node.addEventListener("change", function () {
          node.dispatchEvent(new Event("input"));
        });
        return node;
      }

      function markersBody(context, markers) {
        var list = markers.map(function (m) {
          var out = { time: m.time, name: m.name || "", comments: m.comments || "" };
          if (m.end > m.time) out.duration = Math.round((m.end - m.time) * 1000) / 1000;
          return out;
        });
        var seq = context && context.sequence;
        var last = Math.max.apply(null, markers.map(function (m) { return Math.max(m.time, m.end || 0); }));
        return { sequence_duration: Math.max((seq && seq.duration) || 0, last, 0.5), markers: list };
      }

      function open() {
        if (running) return; // the list on screen is the one being generated
        D.show($("spot"), true);
        $("spot-list").textContent = "";
        cues = [];
        renderTotals();
        say("Reading the sequence's markers…");
        Promise.all([ctx.refreshContext(), ctx.host.getMarkers()])
          .then(function (found) {
            var markers = found[1].markers || [];
            if (!markers.length) return say("No markers in " + found[1].sequence + ". Add markers where sounds belong, then try again.");
            say("Proposing cues for " + F.plural(markers.length, "marker") + "…");
            var body = markersBody(found[0], markers);
            return ctx.api.assist("spot", body, keys.keyFor("spot", body)).then(function (answer) {
              keys.settle(null);
              if (answer.usage) ctx.setCredits(answer.usage.credits_remaining);
              show(answer);
            });
          })
          .catch(function (error) {
            keys.settle(error);
            if (error && error.name === "HostError") return say(error.code === "no_sequence" ? "Open a sequence to spot its markers." : error.message);
            say("");
            ctx.handleError(error, open);
          });
      }

      function show(answer) {
        cues = answer.cues.map(function (c) {
          return { time: c.time, prompt: c.prompt, duration_seconds: c.duration_seconds, loop: c.loop, note: c.note || "", clamped: c.clamped, on: true, status: "" };
        });
        cues.forEach(function (c) {
          $("spot-list").appendChild(row(c));
        });
        say(cues.length ? F.plural(cues.length, "cue") + " proposed. Untick or edit them, then generate." : "No cues were proposed for these markers.");
        renderTotals();
      }

      function progress(done, total, text) {
        var bar = $("spot-progress-bar");
        bar.classList.add("determinate");
        bar.style.width = Math.round((done / total) * 100) + "%";
        $("spot-progress-text").textContent = text;
      }

      /** One cue: generate (its own Idempotency-Key), save, place at its time on a free track. */
      function makeCue(cue, folder, signal, cancelled) {
        var body = Object.assign({}, ctx.sfxRequest(), { prompt: cue.prompt.trim(), duration_seconds: cue.duration_seconds, loop: cue.loop, variations: 1 });
        var key = keys.keyFor("sfx", body);
        return Promise.race([ctx.api.generate("sfx", body, key, signal), cancelled])
          .then(function (doc) {
            keys.settle(null);
            if (doc.credits) ctx.setCredits(doc.credits.remaining);
            var gen = (doc.generations || [])[0];
            if (!gen) throw new SFX.Api.ApiError(0, "empty", "Nothing came back (not charged).");
            return Promise.race([ctx.saveGeneration(gen, signal, folder), cancelled]);
          }, function (error) {
            keys.settle(error);
            throw error;
          })
          .then(function (saved) {
            var duration = Number(saved.gen.duration_seconds) || cue.duration_seconds;
            return ctx.host.importAndPlace(saved.path, { duration: duration, bin: ctx.settings.bin, track: "auto", time: cue.time });
          });
      }

      function generateAll() {
        var todo = pending();
        if (!todo.length || running || SFX.State.generateBlock(state.values)) return;
        var ctrl = typeof AbortController !== "undefined" ? new AbortController() : null;
        var stop = null;
        var cancelled = new Promise(function (_, reject) {
          stop = reject;
        });
        cancelled.catch(function () {});
        running = {
          abort: function () {
            if (ctrl) ctrl.abort();
            stop(new SFX.Api.ApiError(0, "cancelled", "Cancelled."));
          },
        };
        state.set({ spotting: true });
        D.show($("spot-progress"), true);
        var placed = 0;
        var failed = 0;
        var folder = ctx.outputFolder();
        var chain = Promise.resolve(false);
        todo.forEach(function (cue, i) {
          chain = chain.then(function (halted) {
            if (halted) {
              setStatus(cue, "skipped", "Not generated (stopped).");
              return true;
            }
            progress(i, todo.length, "Cue " + (i + 1) + " of " + todo.length + "…");
            setStatus(cue, "working", "Generating…");
            return makeCue(cue, folder, ctrl && ctrl.signal, cancelled).then(
              function (r) {
                placed++;
                if (r.placed) setStatus(cue, "placed", "Placed on " + r.trackName + " at " + F.timecode(r.time, fps()) + ".");
                else setStatus(cue, "placed", r.message);
                return false;
              },
              function (error) {
                var code = (error && error.code) || "";
                var stopped = STOPS.indexOf(code) >= 0 || (error && error.status === 426);
                if (code === "cancelled") {
                  setStatus(cue, "skipped", "Cancelled. Nothing was charged for it.");
                  return true;
                }
                failed++;
                setStatus(cue, "failed", (error && error.message) || "Failed.");
                if (stopped) ctx.handleError(error);
                return stopped;
              }
            );
          });
        });
        chain.then(function () {
          running = null;
          D.show($("spot-progress"), false);
          state.set({ spotting: false });
          var text = F.plural(placed, "cue") + " placed";
          if (failed) text += " · " + F.plural(failed, "cue") + " failed (not charged)";
          ctx.toast(text, failed ? "error" : "ok");
          renderTotals();
        });
      }

      D.on($("spot-open"), "click", open);
      D.on($("spot-generate"), "click", generateAll);
      D.on($("spot-cancel"), "click", function () {
        if (running) running.abort();
      });
      D.on($("spot-close"), "click", function () {
        if (running) running.abort();
        D.show($("spot"), false);
      });
      state.subscribe(["pricing", "busy", "update", "waitUntil", "me"], renderTotals);
    },
  };
})();
