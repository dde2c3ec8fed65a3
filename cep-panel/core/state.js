/*
 * The panel's one state object. Views never talk to each other: a controller changes the state with
 * set(), and every view that subscribed to one of the changed keys renders again. No DOM here.
 */
(function (factory) {
  var api = factory();
  if (typeof window !== "undefined" && window.document) {
    (window.SFX = window.SFX || {}).State = api;
  } else {
    module.exports = api;
  }
})(function () {
  "use strict";

  function initial() {
    return {
      view: "", // signin | main | settings ("" until the panel has started)
      tab: "sfx", // sfx | voice | history
      me: null, // GET /v1/me
      pricing: null, // GET /v1/pricing
      voices: null, // GET /v1/voices (list) once loaded
      sequence: null, // the host's last context.sequence ({frameRate, playhead, audioTracks, ...})
      busy: null, // {kind, phase: "generating" | "downloading" | "saving", started, received, total}
      spotting: false, // cues from markers are being generated (ui/spot.js)
      waitUntil: 0, // Retry-After deadline (ms) during which Generate stays disabled
      offline: false,
      // A marker picked on the SFX form: it applies to inserts of results made from that form only.
      marker: null, // {time, name, comments}
      update: null, // {version, notes_html, size, url, sha256, mandatory, progress?, error?}
      limits: null, // the plan's limits (core/pricing.js limits()), built-in ones until /v1/me answers
      upgradeUrl: "", // where Upgrade goes, once a 402 has named it
      emptyPrompt: false, // the out-of-credits banner is the zero-balance one (not a 402's)
      history: { kind: "", cursor: null, loading: false },
    };
  }

  function Store(values) {
    this.values = values || initial();
    this.listeners = [];
  }
  Store.prototype.get = function (key) {
    return this.values[key];
  };
  /** Applies a patch and tells the subscribers whose keys changed. */
  Store.prototype.set = function (patch) {
    var changed = [];
    for (var key in patch) {
      if (this.values[key] !== patch[key]) {
        this.values[key] = patch[key];
        changed.push(key);
      }
    }
    if (!changed.length) return;
    var listeners = this.listeners.slice();
    for (var i = 0; i < listeners.length; i++) {
      var l = listeners[i];
      for (var j = 0; j < changed.length; j++) {
        if (l.keys.indexOf(changed[j]) >= 0) {
          l.fn(this.values);
          break;
        }
      }
    }
  };
  /** fn(values) runs after any of keys changes; returns an unsubscribe function. */
  Store.prototype.subscribe = function (keys, fn) {
    var entry = { keys: keys, fn: fn };
    this.listeners.push(entry);
    var list = this.listeners;
    return function () {
      var i = list.indexOf(entry);
      if (i >= 0) list.splice(i, 1);
    };
  };

  /** Generate is allowed only when nothing blocks it; the reason is shown to the editor. */
  function generateBlock(values) {
    if (values.update && values.update.mandatory) return "update";
    if (values.busy || values.spotting) return "busy";
    if (values.waitUntil > Date.now()) return "wait";
    var c = (values.me && values.me.credits) || null;
    if (c && !c.unlimited && (c.remaining || 0) <= 0) return "credits";
    return "";
  }

  return { Store: Store, initial: initial, generateBlock: generateBlock };
});
