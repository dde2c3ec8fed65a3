/*
 * Writing help from the server's LLM features: "Enhance" turns the SFX prompt (a short idea) into
 * three richer prompts, each with a length, loop and influence, and picking one fills the form;
 * "Tidy" rewrites the voice-over script for reading aloud and estimates its spoken length.
 * Both are charged by the tokens used; the new balance comes back with the answer.
 */
(function () {
  "use strict";
  var SFX = window.SFX;
  var D = SFX.Dom;
  var $ = D.$;
  var F = SFX.Format;
  var IDEA_MAX = 200; // the API's limit for an idea

  SFX.Views.Assist = {
    mount: function (ctx) {
      var state = ctx.state;
      // Their own keys: a retry after a lost answer is answered from the stored result, uncharged.
      var keys = new SFX.Api.KeyRing(SFX.Api.uuid);

      function ask(feature, body, button) {
        return D.withButton(button, ctx.api.assist(feature, body, keys.keyFor(feature, body))).then(
          function (answer) {
            keys.settle(null);
            return answer;
          },
          function (error) {
            keys.settle(error);
            throw error;
          }
        );
      }

      function charged(answer) {
        var usage = answer && answer.usage;
        if (usage && usage.credits_remaining !== undefined) ctx.setCredits(usage.credits_remaining);
      }

      function describe(option) {
        var parts = [option.duration_seconds === null ? "auto length" : F.seconds(option.duration_seconds)];
        if (option.loop) parts.push("loop");
        parts.push("influence " + Math.round(option.prompt_influence * 100) + "%");
        return parts.join(" · ");
      }

      function fill(option) {
        $("sfx-prompt").value = option.prompt;
        $("sfx-auto").checked = option.duration_seconds === null;
        if (option.duration_seconds !== null) $("sfx-duration").value = String(option.duration_seconds);
        $("sfx-influence").value = String(option.prompt_influence);
        $("sfx-loop").checked = !!option.loop;
        D.show($("sfx-enhance-box"), false);
        ctx.showDuration();
        ctx.updateCosts();
        $("sfx-prompt").focus();
      }

      function enhance() {
        var idea = $("sfx-prompt").value.trim();
        if (!idea) return $("sfx-prompt").focus();
        var marker = state.get("marker");
        var body = { idea: idea.slice(0, IDEA_MAX) };
        if (marker && marker.comments && marker.comments !== idea) body.context = marker.comments.slice(0, 1000);
        var list = $("sfx-enhance-list");
        list.textContent = "";
        $("sfx-enhance-status").textContent = "Writing three prompts…";
        D.show($("sfx-enhance-box"), true);
        ask("sfx-prompt", body, $("sfx-enhance")).then(
          function (answer) {
            charged(answer);
            $("sfx-enhance-status").textContent = "Pick one to fill the form:";
            answer.prompts.forEach(function (option) {
              var item = document.createElement("li");
              var button = document.createElement("button");
              button.type = "button";
              button.className = "enhance-option";
              var text = document.createElement("span");
              text.textContent = option.prompt;
              var meta = document.createElement("small");
              meta.className = "dim";
              meta.textContent = describe(option);
              button.appendChild(text);
              button.appendChild(meta);
              D.on(button, "click", function () {
                fill(option);
              });
              item.appendChild(button);
              list.appendChild(item);
            });
          },
          function (error) {
            D.show($("sfx-enhance-box"), false);
            ctx.handleError(error, enhance);
          }
        );
      }

      function tidy() {
        var script = $("voice-text").value.trim();
        if (!script) return $("voice-text").focus();
        var notes = $("voice-tidy-notes");
        var body = { script: script, speed: Number($("voice-speed").value) };
        if ($("voice-voice").value) body.voice_id = $("voice-voice").value;
        notes.textContent = "Tidying…";
        D.show(notes, true);
        ask("voice-script", body, $("voice-tidy")).then(
          function (answer) {
            charged(answer);
            $("voice-text").value = answer.script;
            var said = "About " + F.seconds(answer.estimated_seconds) + " read aloud (" + answer.words + " words).";
            notes.textContent = [said].concat(answer.notes || []).join(" ");
            ctx.updateCosts();
          },
          function (error) {
            D.show(notes, false);
            ctx.handleError(error, tidy);
          }
        );
      }

      D.on($("sfx-enhance"), "click", enhance);
      D.on($("voice-tidy"), "click", tidy);
      D.on($("sfx-prompt"), "input", function () {
        D.show($("sfx-enhance-box"), false);
      });
    },
  };
})();
