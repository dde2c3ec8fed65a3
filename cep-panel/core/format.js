/*
 * How numbers, times and dates read in the panel. Times on the timeline are shown as the sequence's
 * timecode (HH:MM:SS:FF at its frame rate), as Premiere shows them, not as bare seconds.
 */
(function (factory) {
  var api = factory();
  if (typeof window !== "undefined" && window.document) {
    (window.SFX = window.SFX || {}).Format = api;
  } else {
    module.exports = api;
  }
})(function () {
  "use strict";

  function plural(n, word) {
    return n + " " + word + (n === 1 ? "" : "s");
  }

  /** A length: "2.5 s". */
  function seconds(s) {
    return (Math.round(s * 10) / 10).toFixed(1) + " s";
  }

  function pad(n) {
    return (n < 10 ? "0" : "") + n;
  }

  /**
   * A timeline position as non-drop-frame timecode at the sequence's frame rate; 23.976 and 29.97
   * count frames at their nominal 24 and 30, as Premiere's NDF display does. Without a frame rate
   * (no sequence) it falls back to minutes and seconds.
   */
  function timecode(s, fps) {
    var t = Math.max(0, Number(s) || 0);
    var rate = Math.round(Number(fps) || 0);
    if (!rate) {
      var m = Math.floor(t / 60);
      var rest = t - m * 60;
      return m + ":" + (rest < 10 ? "0" : "") + rest.toFixed(1);
    }
    // The frame that contains the time (as Premiere shows it), counted at the true rate and split
    // at the nominal one; a thousandth of a frame of slack absorbs float error (1.001 s at 23.976).
    var frames = Math.floor(t * Number(fps) + 1e-3);
    var ff = frames % rate;
    var total = Math.floor(frames / rate);
    return pad(Math.floor(total / 3600)) + ":" + pad(Math.floor(total / 60) % 60) + ":" + pad(total % 60) + ":" + pad(ff);
  }

  function shortDate(iso) {
    var d = new Date(iso);
    if (isNaN(d.getTime())) return "";
    return d.toLocaleDateString(undefined, { day: "numeric", month: "short" });
  }

  function dateTime(iso) {
    var d = new Date(iso);
    if (isNaN(d.getTime())) return "";
    return shortDate(iso) + " " + d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
  }

  function basename(p) {
    return String(p).split(/[\\/]/).pop();
  }

  /** "1.2 MB" for an update's download size. */
  function bytes(n) {
    var v = Number(n) || 0;
    if (v < 1024) return v + " B";
    if (v < 1024 * 1024) return Math.round(v / 1024) + " KB";
    return (Math.round((v / (1024 * 1024)) * 10) / 10).toFixed(1) + " MB";
  }

  return { plural: plural, seconds: seconds, timecode: timecode, shortDate: shortDate, dateTime: dateTime, basename: basename, bytes: bytes };
});
