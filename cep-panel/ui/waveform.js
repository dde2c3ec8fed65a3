/*
 * Waveform previews: the WAV's own samples (core/wav.js) reduced to one min/max pair per pixel column
 * and drawn on a canvas, with a playhead while the shell's player plays. Playing is the shell's job
 * (an audio element in CEP, Premiere's Source Monitor in UXP, which has no Web Audio).
 */
(function (factory) {
  var api = factory();
  if (typeof window !== "undefined" && window.document) {
    (window.SFX = window.SFX || {}).Waveform = api;
  } else {
    module.exports = api;
  }
})(function () {
  "use strict";

  /** [min, max] per bucket over all channels. @param {Float32Array[]} channels */
  function computePeaks(channels, buckets) {
    var length = channels.length ? channels[0].length : 0;
    var size = length / buckets;
    var peaks = [];
    for (var b = 0; b < buckets; b++) {
      var start = Math.floor(b * size);
      var end = Math.max(start + 1, Math.floor((b + 1) * size));
      var min = 0;
      var max = 0;
      for (var c = 0; c < channels.length; c++) {
        var data = channels[c];
        for (var i = start; i < end && i < length; i++) {
          var v = data[i];
          if (v < min) min = v;
          if (v > max) max = v;
        }
      }
      peaks.push([min, max]);
    }
    return peaks;
  }

  function cssVar(canvas, name) {
    var value = typeof getComputedStyle === "function" ? getComputedStyle(canvas).getPropertyValue(name) : "";
    return String(value || "").trim() || "#6ea8eb";
  }

  /** Draws peaks; progress (0..1) colours the part already played. */
  function draw(canvas, peaks, progress) {
    var ratio = window.devicePixelRatio || 1;
    var width = canvas.clientWidth || 240;
    var height = canvas.clientHeight || 40;
    if (canvas.width !== Math.round(width * ratio)) canvas.width = Math.round(width * ratio);
    if (canvas.height !== Math.round(height * ratio)) canvas.height = Math.round(height * ratio);
    var g = canvas.getContext("2d");
    if (g.setTransform) g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, width, height);
    var mid = height / 2;
    var played = cssVar(canvas, "--wave-played");
    var rest = cssVar(canvas, "--wave");
    var step = width / peaks.length;
    for (var i = 0; i < peaks.length; i++) {
      var x = i * step;
      var top = mid - Math.max(0.5, peaks[i][1] * (mid - 1));
      var bottom = mid - Math.min(-0.5, peaks[i][0] * (mid - 1));
      g.fillStyle = progress > 0 && x / width <= progress ? played : rest;
      g.fillRect(x, top, Math.max(1, step - 0.5), bottom - top);
    }
    if (progress > 0 && progress < 1) {
      g.fillStyle = played;
      g.fillRect(Math.round(progress * width), 0, 1, height);
    }
  }

  var playing = null;

  /**
   * A waveform bound to a canvas. start() asks the shell to play and resolves with a handle
   * {stop(), progress() -> 0..1 | null, onended}; only one view plays at a time.
   */
  function View(canvas, onState, start) {
    this.canvas = canvas;
    this.onState = onState || function () {};
    this.start = start;
    this.peaks = null;
    this.handle = null;
    this.frame = 0;
  }
  /** @param {{channels: Float32Array[]}} decoded */
  View.prototype.render = function (decoded) {
    var width = this.canvas.clientWidth || 240;
    this.peaks = computePeaks(decoded.channels, Math.max(32, Math.floor(width / 2)));
    draw(this.canvas, this.peaks, 0);
    this.canvas.setAttribute("data-peaks", String(this.peaks.length));
  };
  View.prototype.redraw = function () {
    if (this.peaks) draw(this.canvas, this.peaks, this.handle ? this.handle.progress() || 0 : 0);
  };
  View.prototype.play = function () {
    var self = this;
    if (playing && playing !== self) playing.stop();
    playing = self;
    self.onState(true);
    return Promise.resolve(self.start()).then(
      function (handle) {
        if (playing !== self) return handle.stop();
        self.handle = handle;
        handle.onended = function () {
          if (self.handle === handle) self.stop();
        };
        var raf = window.requestAnimationFrame || function (fn) { return setTimeout(fn, 40); };
        (function tick() {
          if (self.handle !== handle) return;
          self.redraw();
          self.frame = raf(tick);
        })();
      },
      function (error) {
        if (playing === self) playing = null;
        self.onState(false);
        throw error;
      }
    );
  };
  View.prototype.stop = function () {
    var handle = this.handle;
    this.handle = null;
    if (handle) handle.stop();
    if (playing === this) playing = null;
    this.redraw();
    this.onState(false);
  };
  View.prototype.toggle = function () {
    if (playing === this) {
      this.stop();
      return Promise.resolve();
    }
    return this.play();
  };

  return { computePeaks: computePeaks, draw: draw, View: View };
});
