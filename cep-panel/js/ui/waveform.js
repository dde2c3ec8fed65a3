/*
 * Waveform previews: decode with WebAudio, reduce to one min/max pair per pixel column, draw on a
 * canvas, and play/stop with a moving playhead. Decoding happens once per result.
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

  var context = null;
  function audioContext() {
    if (!context) {
      var Ctor = window.AudioContext || window.webkitAudioContext;
      context = new Ctor();
    }
    return context;
  }

  /** @param {ArrayBuffer} bytes @returns {Promise<AudioBuffer>} */
  function decode(bytes) {
    var copy = bytes.slice(0);
    var ctx = audioContext();
    return new Promise(function (resolve, reject) {
      var p = ctx.decodeAudioData(copy, resolve, reject);
      if (p && p.then) p.then(resolve, reject);
    });
  }

  function cssVar(canvas, name) {
    return getComputedStyle(canvas).getPropertyValue(name).trim() || "#6ea8eb";
  }

  /** Draws peaks; progress (0..1) colours the part already played. */
  function draw(canvas, peaks, progress) {
    var ratio = window.devicePixelRatio || 1;
    var width = canvas.clientWidth || 240;
    var height = canvas.clientHeight || 40;
    if (canvas.width !== Math.round(width * ratio)) canvas.width = Math.round(width * ratio);
    if (canvas.height !== Math.round(height * ratio)) canvas.height = Math.round(height * ratio);
    var g = canvas.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
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

  /**
   * A waveform view bound to a canvas: render(buffer), toggle() play/stop. Only one plays at a time.
   */
  var playing = null;
  function View(canvas, onState) {
    this.canvas = canvas;
    this.onState = onState || function () {};
    this.buffer = null;
    this.peaks = null;
    this.source = null;
    this.startedAt = 0;
    this.frame = 0;
  }
  View.prototype.render = function (buffer) {
    this.buffer = buffer;
    var channels = [];
    for (var c = 0; c < buffer.numberOfChannels; c++) channels.push(buffer.getChannelData(c));
    var width = this.canvas.clientWidth || 240;
    this.peaks = computePeaks(channels, Math.max(32, Math.floor(width / 2)));
    draw(this.canvas, this.peaks, 0);
    this.canvas.setAttribute("data-peaks", String(this.peaks.length));
  };
  View.prototype.redraw = function () {
    if (this.peaks) draw(this.canvas, this.peaks, this.progress());
  };
  View.prototype.progress = function () {
    if (!this.source || !this.buffer) return 0;
    return Math.min(1, (audioContext().currentTime - this.startedAt) / this.buffer.duration);
  };
  View.prototype.play = function () {
    var self = this;
    if (!self.buffer) return;
    if (playing && playing !== self) playing.stop();
    var ctx = audioContext();
    if (ctx.state === "suspended" && ctx.resume) ctx.resume();
    var source = ctx.createBufferSource();
    source.buffer = self.buffer;
    source.connect(ctx.destination);
    source.onended = function () {
      if (self.source === source) self.stop();
    };
    self.source = source;
    self.startedAt = ctx.currentTime;
    source.start();
    playing = self;
    self.onState(true);
    (function tick() {
      if (self.source !== source) return;
      draw(self.canvas, self.peaks, self.progress());
      self.frame = requestAnimationFrame(tick);
    })();
  };
  View.prototype.stop = function () {
    var source = this.source;
    this.source = null;
    cancelAnimationFrame(this.frame);
    if (source) {
      try {
        source.stop();
      } catch (e) {
        /* already ended */
      }
    }
    if (playing === this) playing = null;
    if (this.peaks) draw(this.canvas, this.peaks, 0);
    this.onState(false);
  };
  View.prototype.toggle = function () {
    if (this.source) this.stop();
    else this.play();
  };

  return { computePeaks: computePeaks, decode: decode, draw: draw, View: View };
});
