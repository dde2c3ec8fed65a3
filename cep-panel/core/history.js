/*
 * Generation id -> path of the file this panel wrote, so History re-inserts without downloading
 * again. Kept in the storage adapter (a JSON file in CEP, plugin data in UXP), newest last, capped.
 */
(function (factory) {
  var api = factory();
  if (typeof window !== "undefined" && window.document) {
    (window.SFX = window.SFX || {}).History = api;
  } else {
    module.exports = api;
  }
})(function () {
  "use strict";

  var KEY = "local";
  var MAX_LOCAL = 500;

  function LocalCopies(store, max) {
    this.store = store;
    this.max = max || MAX_LOCAL;
  }
  LocalCopies.prototype.path = function (id) {
    var map = this.store.get(KEY) || {};
    return map[id] || null;
  };
  LocalCopies.prototype.remember = function (id, path) {
    var map = Object.assign({}, this.store.get(KEY) || {});
    delete map[id];
    map[id] = path;
    var ids = Object.keys(map);
    for (var i = 0; i < ids.length - this.max; i++) delete map[ids[i]];
    return this.store.set(KEY, map);
  };

  return { LocalCopies: LocalCopies, MAX_LOCAL: MAX_LOCAL };
});
