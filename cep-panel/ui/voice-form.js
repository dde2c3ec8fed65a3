/* The voice-over form: voice list with a preview, the script and its character count, model settings. */
(function () {
  "use strict";
  var SFX = window.SFX;
  var D = SFX.Dom;
  var $ = D.$;

  SFX.Views.VoiceForm = {
    mount: function (ctx) {
      var state = ctx.state;
      var preview = null;

      function request() {
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
          bit_depth: Number(ctx.settings.bitDepth) === 24 ? 24 : 16,
        };
      }

      function loadVoices() {
        var select = $("voice-voice");
        return ctx.api.voices().then(
          function (r) {
            ctx.online();
            var voices = r.voices || [];
            D.trimOptions(select, 0);
            voices.forEach(function (v) {
              var labels = v.labels ? [v.labels.accent, v.labels.gender, v.labels.age].filter(Boolean).join(", ") : "";
              D.addOption(select, v.name + (labels ? " \u2014 " + labels : ""), v.voice_id);
            });
            if (!voices.length) D.addOption(select, "No voices available", "");
            if (state.get("limits").voice === false) ctx.banner("upgrade", "Voice-over is not included in your plan.", "Upgrade", ctx.openUpgrade);
            state.set({ voices: voices });
            ctx.updateButtons();
          },
          function (error) {
            D.trimOptions(select, 0);
            D.addOption(select, "Voices unavailable", "");
            ctx.handleError(error, loadVoices);
          }
        );
      }

      function setPlaying(playing) {
        SFX.Icons.set($("voice-preview"), playing ? "stop" : "play");
      }

      function togglePreview() {
        if (preview) {
          preview.stop();
          preview = null;
          return setPlaying(false);
        }
        var voice = (state.get("voices") || []).filter(function (v) {
          return v.voice_id === $("voice-voice").value;
        })[0];
        if (!voice || !voice.preview_url) return ctx.toast("This voice has no preview.", "info");
        setPlaying(true);
        ctx.player.playUrl(ctx.api.url(voice.preview_url)).then(
          function (handle) {
            preview = handle;
            handle.onended = function () {
              if (preview === handle) preview = null;
              setPlaying(false);
            };
          },
          function () {
            setPlaying(false);
            ctx.toast("Couldn't play the preview.", "error");
          }
        );
      }

      D.on($("voice-form"), "submit", function (event) {
        event.preventDefault();
        ctx.generate("voice");
      });
      // A script has line breaks, so only Cmd/Ctrl+Enter generates.
      D.on($("voice-form"), "keydown", function (event) {
        if (event.key === "Enter" && (event.metaKey || event.ctrlKey)) {
          event.preventDefault();
          ctx.generate("voice");
        }
      });
      D.on($("voice-text"), "input", ctx.updateCosts);
      D.on($("voice-voice"), "change", ctx.updateButtons);
      D.on($("voice-preview"), "click", togglePreview);
      D.on($("voice-cancel"), "click", ctx.cancelGeneration);
      D.on($("voice-more-toggle"), "click", function () {
        var open = $("voice-more").hidden;
        D.show($("voice-more"), open);
        $("voice-more-toggle").setAttribute("aria-expanded", String(open));
      });
      var outs = document.querySelectorAll("[data-out]");
      for (var j = 0; j < outs.length; j++) {
        (function (out) {
          var input = $(out.getAttribute("data-out"));
          function render() {
            out.textContent = input.id === "voice-speed" ? Number(input.value).toFixed(2) + "\u00d7" : Math.round(Number(input.value) * 100) + "%";
          }
          D.on(input, "input", render);
          render();
        })(outs[j]);
      }

      ctx.voiceRequest = request;
      ctx.loadVoices = loadVoices;
    },
  };
})();
