/*
 * History: past generations from the server, filtered by kind, paged. Insert and Bin use the local
 * copy when it still exists, else download it again (never charged). History always inserts at the
 * playhead: a marker picked on the SFX form belongs to that form's results only.
 */
(function () {
  "use strict";
  var SFX = window.SFX;
  var D = SFX.Dom;
  var $ = D.$;
  var F = SFX.Format;

  SFX.Views.History = {
    mount: function (ctx) {
      var state = ctx.state;
      var playing = null;

      function load(reset) {
        var h = state.get("history");
        if (h.loading) return;
        if (reset) $("history-list").textContent = "";
        var cursor = reset ? null : h.cursor;
        state.set({ history: Object.assign({}, h, { cursor: cursor, loading: true }) });
        ctx.api
          .history({ kind: h.kind, cursor: cursor, limit: 20 })
          .then(
            function (page) {
              ctx.online();
              (page.items || []).forEach(addItem);
              state.set({ history: Object.assign({}, state.get("history"), { cursor: page.next_cursor || null }) });
              D.show($("history-more"), !!page.next_cursor);
              D.show($("history-empty"), !$("history-list").children.length);
            },
            function (error) {
              ctx.handleError(error, function () {
                load(reset);
              });
            }
          )
          .then(function () {
            state.set({ history: Object.assign({}, state.get("history"), { loading: false }) });
          });
      }

      /** The local copy when it still exists, else a fresh download (no charge) saved like a new result. */
      function ensureLocal(item) {
        var known = ctx.local.path(item.id);
        var check = ctx.files ? ctx.files.exists(known) : Promise.resolve(false);
        return check.then(function (exists) {
          if (exists) return known;
          if (!ctx.files) throw new SFX.HostError("no_files", "Saving files needs Premiere Pro (file access is not available here).");
          return ctx.saveGeneration(item, undefined, null).then(function (saved) {
            return saved.path;
          });
        });
      }

      function play(item, button) {
        if (playing) {
          var same = playing.id === item.id;
          playing.handle.stop();
          SFX.Icons.set(playing.button, "play");
          playing = null;
          if (same) return;
        }
        D.withButton(
          button,
          ensureLocal(item).then(function (path) {
            return ctx.files.read(path).then(function (bytes) {
              return ctx.player.playFile(path, bytes);
            });
          })
        ).then(
          function (handle) {
            var entry = { id: item.id, handle: handle, button: button };
            playing = entry;
            SFX.Icons.set(button, "stop");
            handle.onended = function () {
              SFX.Icons.set(button, "play");
              if (playing === entry) playing = null;
            };
          },
          function (error) {
            ctx.handleError(error);
          }
        );
      }

      function remove(item, node, button) {
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
        D.withButton(button, ctx.api.deleteGeneration(item.id)).then(
          function () {
            node.remove();
            D.show($("history-empty"), !$("history-list").children.length);
          },
          function (error) {
            ctx.handleError(error);
          }
        );
      }

      function addItem(item) {
        var node = SFX.Markup.historyItem();
        var duration = Number(item.duration_seconds) || 0;
        node.setAttribute("data-id", item.id);
        SFX.Icons.set(node.querySelector(".kind"), item.kind === "voice" ? "voice" : "wave");
        node.querySelector(".history-title").textContent = item.prompt || item.text || item.filename || "Untitled";
        node.querySelector(".history-title").title = item.prompt || item.text || "";
        var sub = [F.seconds(duration), F.plural(Number(item.credits) || 0, "credit"), F.dateTime(item.created_at)];
        if (item.take_label) sub.unshift(item.take_label); // "take 2 of 3": which of one request's takes
        node.querySelector(".history-sub").textContent = sub.join(" · ");
        D.on(node, "click", function (event) {
          var button = event.target.closest("button[data-act]");
          if (!button) return;
          var act = button.getAttribute("data-act");
          if (act === "delete") return remove(item, node, button);
          if (act === "play") return play(item, button);
          D.withButton(button, ensureLocal(item)).then(
            function (path) {
              if (act === "insert") return ctx.insert(path, duration, null, null);
              return ctx.importToBin(path);
            },
            function (error) {
              ctx.handleError(error);
            }
          );
        });
        $("history-list").appendChild(node);
      }

      var kinds = document.querySelectorAll(".segmented [data-kind]");
      for (var k = 0; k < kinds.length; k++) {
        D.on(kinds[k], "click", function (event) {
          for (var n = 0; n < kinds.length; n++) kinds[n].setAttribute("aria-pressed", String(kinds[n] === event.currentTarget));
          state.set({ history: Object.assign({}, state.get("history"), { kind: event.currentTarget.getAttribute("data-kind") }) });
          load(true);
        });
      }
      D.on($("history-refresh"), "click", function () {
        load(true);
      });
      D.on($("history-more"), "click", function () {
        load(false);
      });

      ctx.loadHistory = load;
    },
  };
})();
