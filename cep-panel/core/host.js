/*
 * The host adapter contract: the UI's only way into Premiere Pro. Two implementations exist,
 * cep/host-adapter.js (ExtendScript through CSInterface.evalScript) and uxp/host-adapter.js (the
 * async `premierepro` module); tests/host-contract.js runs the same suite against both. Every method
 * except info/openURL/getTheme/onThemeChange returns a Promise; failures reject with HostError.
 *
 *   info()                         -> {adapter: "cep" | "uxp" | "none", host, hostVersion, lockedTracksKnown}
 *   getContext()                   -> {project: {name, path} | null,
 *                                      sequence: {id, name, playhead, frameRate,
 *                                                 audioTracks: [{index, name, locked, clips}]} | null}
 *   importAndPlace(file, options)  -> {placed: true, track, trackName, time, bin, item, sequence}
 *                                   | {placed: false, reason: "no_sequence", message, bin, item}
 *       options: {duration (s), bin (name), track ("auto" | 0-based index), time (s, default playhead)}
 *   importToBin(file, bin)         -> {bin, item, imported, binCreated}
 *   getMarkers()                   -> {sequence, markers: [{time, end, name, comments}]}
 *   revealFile(file)               -> {folder}
 *   preview(file)                  -> {opened: true} (UXP: Source Monitor; CEP plays in the panel)
 *   openURL(url)                   -> undefined (opens the default browser)
 *   getTheme()                     -> {background: {red, green, blue}, fontSize, fontFamily}
 *   onThemeChange(callback)        -> unsubscribe function; callback(theme)
 *
 * `locked` is null where the host cannot tell (UXP's API has no isLocked()).
 */
(function (factory) {
  var api = factory();
  if (typeof window !== "undefined" && window.document) {
    var SFX = (window.SFX = window.SFX || /** @type {any} */ ({}));
    SFX.Host = api;
    SFX.HostError = api.HostError;
  } else {
    module.exports = api;
  }
})(function () {
  "use strict";

  function HostError(code, message) {
    this.name = "HostError";
    this.code = code;
    this.message = message;
  }
  HostError.prototype = Object.create(Error.prototype);
  HostError.prototype.constructor = HostError;

  var DEFAULT_BIN = "AI SFX";
  // A clip that merely touches the new one (ends exactly at the playhead) is not an overlap.
  var EPSILON = 0.0005;

  /** Editor-facing messages shared by both adapters, so both builds say the same thing. */
  var MESSAGES = {
    no_project: "Open a Premiere Pro project first.",
    no_sequence_markers: "Open a sequence to see its markers.",
    no_free_track: "Every unlocked audio track has a clip at the playhead. Free a track, or import to the bin instead.",
  };

  function overlaps(clips, start, end) {
    for (var i = 0; i < clips.length; i++) {
      if (clips[i][0] < end - EPSILON && clips[i][1] > start + EPSILON) return true;
    }
    return false;
  }

  function trackLabel(name, index) {
    return name ? String(name) : "A" + (index + 1);
  }

  return { HostError: HostError, DEFAULT_BIN: DEFAULT_BIN, EPSILON: EPSILON, MESSAGES: MESSAGES, overlaps: overlaps, trackLabel: trackLabel };
});
