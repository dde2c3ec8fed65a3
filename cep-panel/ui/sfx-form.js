/*
 * The sound-effect form: prompt, duration, influence, loop, variations, and the marker picker. A
 * picked marker fills the prompt and becomes the insert time of the results of THIS form only; the
 * chip shows it until cleared, and each result's button says where it will go.
 */
(function () {
  "use strict";
  var SFX = window.SFX;
  var D = SFX.Dom;
  var $ = D.$;
  var F = SFX.Format;

  SFX.Views.SfxForm = {
    mount: function (ctx) {
      var state = ctx.state;
      var markers = [];

      function request() {
        var auto = $("sfx-auto").checked;
        return {
          prompt: $("sfx-prompt").value.trim(),
          duration_seconds: auto ? null : Number($("sfx-duration").value),
          prompt_influence: Number($("sfx-influence").value),
          loop: $("sfx-loop").checked,
          variations: Number($("sfx-variations").value),
          format: "wav",
          bit_depth: Number(ctx.settings.bitDepth) === 24 ? 24 : 16,
        };
      }

      function showDuration() {
        var auto = $("sfx-auto").checked;
        $("sfx-duration").disabled = auto;
        $("sfx-duration-out").textContent = auto ? "Auto" : F.seconds(Number($("sfx-duration").value));
        $("sfx-influence-out").textContent = Math.round(Number($("sfx-influence").value) * 100) + "%";
      }

      function applyLimits() {
        var l = state.get("limits");
        var opts = $("sfx-variations").options;
        for (var i = 0; i < opts.length; i++) opts[i].disabled = Number(opts[i].value) > l.max_variations;
        $("sfx-variations").title = l.max_variations < 4 ? "Your plan allows up to " + l.max_variations + "; upgrade for more" : "";
        if (Number($("sfx-variations").value) > l.max_variations) $("sfx-variations").value = String(l.max_variations);
        var slider = $("sfx-duration");
        slider.max = String(Math.min(30, l.max_sfx_seconds));
        if (Number(slider.value) > Number(slider.max)) slider.value = slider.max;
        $("voice-text").maxLength = l.max_voice_chars;
        showDuration();
      }

      function fps() {
        var seq = state.get("sequence");
        return seq && seq.frameRate;
      }

      function loadMarkers() {
        var select = $("sfx-marker");
        ctx.refreshContext();
        ctx.host.getMarkers().then(
          function (r) {
            markers = r.markers;
            D.trimOptions(select, 1);
            select.options[0].textContent = r.markers.length ? "From marker…" : "No markers in " + r.sequence;
            r.markers.forEach(function (m, i) {
              var label = F.timecode(m.time, fps()) + "  " + (m.name || m.comments || "Marker " + (i + 1));
              D.addOption(select, label.length > 48 ? label.slice(0, 47) + "…" : label, String(i));
            });
          },
          function (error) {
            markers = [];
            D.trimOptions(select, 1);
            select.options[0].textContent = error.code === "no_sequence" ? "Open a sequence for markers" : "Markers unavailable";
          }
        );
      }

      function useMarker() {
        var select = $("sfx-marker");
        var m = markers[Number(select.value)];
        if (select.value === "" || !m) return;
        var text = m.comments || m.name;
        if (text) $("sfx-prompt").value = text;
        state.set({ marker: { time: m.time, name: m.name || "", comments: m.comments || "" } });
        select.value = "";
        ctx.updateCosts();
      }

      state.subscribe(["marker", "sequence"], function (v) {
        var m = v.marker;
        D.show($("sfx-marker-chip"), !!m);
        if (m) $("sfx-marker-text").textContent = "Inserts at marker " + F.timecode(m.time, fps()) + (m.name ? " (" + m.name + ")" : "");
      });

      D.on($("sfx-form"), "submit", function (event) {
        event.preventDefault();
        ctx.generate("sfx");
      });
      // Enter generates (Shift+Enter is a new line in the prompt).
      D.on($("sfx-form"), "keydown", function (event) {
        if (event.key !== "Enter" || event.isComposing) return;
        if (event.target.id === "sfx-prompt" && event.shiftKey) return;
        if (event.target.tagName === "SELECT" || event.target.tagName === "BUTTON") return;
        event.preventDefault();
        ctx.generate("sfx");
      });
      ["sfx-prompt", "sfx-duration", "sfx-auto", "sfx-influence", "sfx-loop", "sfx-variations"].forEach(function (id) {
        function changed() {
          showDuration();
          ctx.updateCosts();
        }
        D.on($(id), "input", changed);
        D.on($(id), "change", changed);
      });
      D.on($("sfx-cancel"), "click", ctx.cancelGeneration);
      D.on($("sfx-marker"), "focus", loadMarkers);
      D.on($("sfx-marker"), "change", useMarker);
      D.on($("sfx-marker-clear"), "click", function () {
        state.set({ marker: null });
      });

      ctx.sfxRequest = request;
      ctx.applyLimits = applyLimits;
      ctx.showDuration = showDuration;
    },
  };
})();
