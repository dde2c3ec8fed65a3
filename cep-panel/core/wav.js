/*
 * Reads a PCM or float WAV into per-channel Float32 samples, so the waveform is drawn from the file
 * itself: UXP has no Web Audio, and CEP needs no decoder round trip for it either.
 */
(function (factory) {
  var api = factory();
  if (typeof window !== "undefined" && window.document) {
    (window.SFX = window.SFX || {}).Wav = api;
  } else {
    module.exports = api;
  }
})(function () {
  "use strict";

  function fail(message) {
    var e = new Error(message);
    e.code = "bad_wav";
    throw e;
  }

  function tag(view, at) {
    return String.fromCharCode(view.getUint8(at), view.getUint8(at + 1), view.getUint8(at + 2), view.getUint8(at + 3));
  }

  /** @param {ArrayBuffer} buffer @returns {{sampleRate, channels: Float32Array[], duration, bitsPerSample}} */
  function decode(buffer) {
    var view = new DataView(buffer);
    if (buffer.byteLength < 12 || tag(view, 0) !== "RIFF" || tag(view, 8) !== "WAVE") fail("not a WAV file");
    var fmt = null;
    var data = null;
    var at = 12;
    while (at + 8 <= buffer.byteLength) {
      var id = tag(view, at);
      var size = view.getUint32(at + 4, true);
      var body = at + 8;
      if (id === "fmt ") {
        fmt = { format: view.getUint16(body, true), channels: view.getUint16(body + 2, true), rate: view.getUint32(body + 4, true), bits: view.getUint16(body + 14, true) };
        // WAVE_FORMAT_EXTENSIBLE keeps the real format in the sub-format GUID's first two bytes.
        if (fmt.format === 0xfffe && size >= 26) fmt.format = view.getUint16(body + 24, true);
      } else if (id === "data") {
        data = { start: body, size: Math.min(size, buffer.byteLength - body) };
      }
      at = body + size + (size % 2);
    }
    if (!fmt || !data) fail("WAV without fmt or data chunk");
    if (!fmt.channels || !fmt.rate) fail("WAV with no channels");
    var bytesPer = fmt.bits / 8;
    var frames = Math.floor(data.size / (bytesPer * fmt.channels));
    var channels = [];
    for (var c = 0; c < fmt.channels; c++) channels.push(new Float32Array(frames));
    var read;
    if (fmt.format === 1 && fmt.bits === 16) read = function (p) { return view.getInt16(p, true) / 32768; };
    else if (fmt.format === 1 && fmt.bits === 24) read = function (p) { var v = view.getUint8(p) | (view.getUint8(p + 1) << 8) | (view.getInt8(p + 2) << 16); return v / 8388608; };
    else if (fmt.format === 1 && fmt.bits === 8) read = function (p) { return (view.getUint8(p) - 128) / 128; };
    else if (fmt.format === 3 && fmt.bits === 32) read = function (p) { return view.getFloat32(p, true); };
    else fail("unsupported WAV format " + fmt.format + "/" + fmt.bits);
    var p = data.start;
    for (var f = 0; f < frames; f++) {
      for (var ch = 0; ch < fmt.channels; ch++) {
        channels[ch][f] = read(p);
        p += bytesPer;
      }
    }
    return { sampleRate: fmt.rate, channels: channels, duration: frames / fmt.rate, bitsPerSample: fmt.bits };
  }

  return { decode: decode };
});
