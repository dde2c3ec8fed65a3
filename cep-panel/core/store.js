/*
 * The storage adapter's shared half: one small key/value document (tokens, settings, the history
 * map) read once when the panel opens, so the API client can ask for its tokens synchronously, and
 * written through to the shell's backend on every change (one write at a time, the last one wins).
 *
 * A backend is {read() -> Promise<object|null>, write(object) -> Promise}; an optional secret
 * backend of the same shape keeps the tokens apart (UXP's secureStorage).
 */
(function (factory) {
  var api = factory();
  if (typeof window !== "undefined" && window.document) {
    (window.SFX = window.SFX || {}).Store = api;
  } else {
    module.exports = api;
  }
})(function () {
  "use strict";

  var SECRET_KEYS = ["tokens"];

  function Writer(backend) {
    this.backend = backend;
    this.pending = null;
    this.running = Promise.resolve();
  }
  /** Coalesces writes: while one runs, only the newest document waits for its turn. */
  Writer.prototype.write = function (doc) {
    var self = this;
    var first = !self.pending;
    self.pending = doc;
    if (first) {
      self.running = self.running.then(function () {
        var next = self.pending;
        self.pending = null;
        return self.backend.write(next);
      });
    }
    return self.running;
  };

  function KeyValue(doc, secret, writers) {
    this.doc = doc;
    this.secret = secret;
    this.writers = writers;
  }
  KeyValue.prototype.isSecret = function (key) {
    return !!this.writers.secret && SECRET_KEYS.indexOf(key) >= 0;
  };
  KeyValue.prototype.get = function (key) {
    var source = this.isSecret(key) ? this.secret : this.doc;
    return source[key] === undefined ? null : source[key];
  };
  KeyValue.prototype.set = function (key, value) {
    var secret = this.isSecret(key);
    var target = secret ? this.secret : this.doc;
    if (value === null || value === undefined) delete target[key];
    else target[key] = value;
    return (secret ? this.writers.secret : this.writers.plain).write(Object.assign({}, target));
  };
  KeyValue.prototype.remove = function (key) {
    return this.set(key, null);
  };

  /** Reads both backends; a broken or missing document starts empty rather than blocking the panel. */
  function open(backend, secretBackend) {
    function safeRead(b) {
      if (!b) return Promise.resolve({});
      return b.read().then(
        function (doc) {
          return doc && typeof doc === "object" ? doc : {};
        },
        function () {
          return {};
        }
      );
    }
    return Promise.all([safeRead(backend), safeRead(secretBackend)]).then(function (docs) {
      return new KeyValue(docs[0], docs[1], { plain: new Writer(backend), secret: secretBackend ? new Writer(secretBackend) : null });
    });
  }

  /** The API client's TokenStore over a KeyValue (same get/set/clear contract, synchronous reads). */
  function tokenStore(kv) {
    return {
      get: function () {
        return kv.get("tokens");
      },
      set: function (tokens) {
        kv.set("tokens", tokens);
      },
      clear: function () {
        kv.remove("tokens");
      },
    };
  }

  /** A backend in memory (tests, and a plain browser without the host). */
  function memoryBackend(initialDoc) {
    var saved = initialDoc ? JSON.stringify(initialDoc) : null;
    return {
      writes: 0,
      read: function () {
        return Promise.resolve(saved ? JSON.parse(saved) : null);
      },
      write: function (doc) {
        this.writes++;
        saved = JSON.stringify(doc);
        return Promise.resolve();
      },
      peek: function () {
        return saved ? JSON.parse(saved) : null;
      },
    };
  }

  return { open: open, tokenStore: tokenStore, memoryBackend: memoryBackend, SECRET_KEYS: SECRET_KEYS };
});
