/*
 * Generated results: waveform, play, insert (at the playhead, or at the marker the SFX form had
 * when they were made), import to the bin, reveal, a new variation, and drag to the timeline.
 * A new result is scrolled into view: in a docked panel the form alone fills the first screen.
 */
(function () {
  "use strict";
  var SFX = window.SFX;
  var D = SFX.Dom;
  var $ = D.$;
  var F = SFX.Format;
  var MAX_RESULTS = 12;
  var PLACE_REFUSALS = ["no_free_track", "track_occupied", "track_locked"];

  SFX.Views.Results = {
    mount: function (ctx) {
      var state = ctx.state;

      function fps() {
        var seq = state.get("sequence");
        return seq && seq.frameRate;
      }

      function targetLabel(at) {
        return at ? "Insert at marker " + F.timecode(at.time, fps()) : "Insert at playhead";
      }

      function importToBin(path, button) {
        return D.withButton(button, ctx.host.importToBin(path, ctx.settings.bin)).then(
          function (r) {
            ctx.toast((r.imported ? "Imported into " : "Already in ") + "the bin \u201c" + r.bin + "\u201d.", "ok");
          },
          function (error) {
            ctx.handleError(error);
          }
        );
      }

      /** at: {time} of a marker, or null for the playhead. */
      function insert(path, duration, button, at) {
        var s = ctx.settings;
        var options = { duration: duration, bin: s.bin, track: s.track === "auto" ? "auto" : Number(s.track) };
        if (at) options.time = at.time;
        return D.withButton(button, ctx.host.importAndPlace(path, options)).then(
          function (r) {
            if (r.placed) ctx.toast("Placed on " + r.trackName + " at " + F.timecode(r.time, fps()) + ".", "ok");
            else ctx.toast(r.message, "info");
          },
          function (error) {
            if (PLACE_REFUSALS.indexOf(error.code) >= 0) {
              return ctx.toast(error.message, "error", "Import to bin", function () {
                importToBin(path);
              });
            }
            ctx.handleError(error);
          }
        );
      }

      function playFile(path, bytes) {
        return function () {
          return ctx.player.playFile(path, bytes);
        };
      }

      function addResult(kind, saved, body, at) {
        var gen = saved.gen;
        var node = SFX.Markup.result();
        var list = $(kind + "-results");
        var duration = Number(gen.duration_seconds) || 0;
        node.setAttribute("data-id", gen.id);
        if (saved.path) node.setAttribute("data-path", saved.path);
        if (at) node.setAttribute("data-at", String(at.time));
        node.querySelector(".result-name").textContent = saved.path ? F.basename(saved.path) : gen.filename || "sound.wav";
        node.querySelector(".result-name").title = saved.path || "";
        var sub = [F.seconds(duration), F.plural(Number(gen.credits) || 0, "credit")];
        if (gen.take_label) sub.push(gen.take_label);
        else if (body.variations > 1 && gen.variation !== undefined) sub.push("take " + (Number(gen.variation) + 1) + " of " + body.variations);
        node.querySelector(".result-sub").textContent = sub.join(" · ");
        var insertBtn = node.querySelector("[data-act=insert]");
        insertBtn.querySelector(".label").textContent = targetLabel(at);
        list.insertBefore(node, list.firstChild);
        while (list.children.length > MAX_RESULTS) list.removeChild(list.lastChild);

        var playBtn = node.querySelector(".play");
        var view = new SFX.Waveform.View(node.querySelector(".wave"), function (playing) {
          SFX.Icons.set(playBtn, playing ? "stop" : "play");
          playBtn.setAttribute("aria-label", playing ? "Stop" : "Play");
          node.classList.toggle("playing", playing);
        }, playFile(saved.path, saved.bytes));
        try {
          var decoded = SFX.Wav.decode(saved.bytes);
          // The server measured the file; the decoder's figure is only a fallback.
          duration = duration || decoded.duration;
          view.render(decoded);
          node.setAttribute("data-ready", "true");
        } catch (e) {
          node.setAttribute("data-ready", "error");
          node.querySelector(".result-sub").textContent += " · preview unavailable";
        }
        if (node.scrollIntoView) node.scrollIntoView({ block: "nearest" });

        D.on(playBtn, "click", function () {
          view.toggle().catch(function () {
            ctx.toast("Couldn't play this sound.", "error");
          });
        });
        D.on(node, "themechange", function () {
          view.redraw();
        });
        D.on(node, "dragstart", function (event) {
          if (!saved.path) return event.preventDefault();
          event.dataTransfer.effectAllowed = "copy";
          event.dataTransfer.setData("com.adobe.cep.dnd.file.0", saved.path);
          event.dataTransfer.setData("text/plain", saved.path);
          // Premiere imports a dropped file on its own, into whatever bin is selected: importing it
          // first into the chosen bin (once: the host skips a file already there) keeps the bin
          // setting and the no-duplicates rule for drags too.
          ctx.host.importToBin(saved.path, ctx.settings.bin).catch(function (error) {
            ctx.handleError(error);
          });
        });
        D.on(node.querySelector(".result-actions"), "click", function (event) {
          var button = event.target.closest("button[data-act]");
          if (!button) return;
          var act = button.getAttribute("data-act");
          if (act === "again") return ctx.generate(kind, Object.assign({}, body, { variations: 1 }), at);
          if (!saved.path) return ctx.toast("Saving files needs Premiere Pro (file access is not available here).", "error");
          if (act === "insert") insert(saved.path, duration, button, at);
          else if (act === "bin") importToBin(saved.path, button);
          else if (act === "reveal") ctx.host.revealFile(saved.path).catch(ctx.handleError);
        });
      }

      // Timecodes follow the sequence's frame rate once the host has told it.
      state.subscribe(["sequence"], function () {
        var nodes = document.querySelectorAll(".result[data-at]");
        for (var i = 0; i < nodes.length; i++) {
          nodes[i].querySelector("[data-act=insert] .label").textContent = targetLabel({ time: Number(nodes[i].getAttribute("data-at")) });
        }
      });

      ctx.addResult = addResult;
      ctx.insert = insert;
      ctx.importToBin = importToBin;
    },
  };
})();
