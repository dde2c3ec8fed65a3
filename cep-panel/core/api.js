/*
 * The server's /v1 API as the panel uses it: sign-in, transparent token refresh, typed errors.
 * Runs unchanged in CEP, a plain browser and Node (tests): fetch, storage and clock are injected.
 */
(function (factory) {
  var api = factory();
  if (typeof window !== "undefined" && window.document) {
    (window.SFX = window.SFX || {}).Api = api;
  } else {
    module.exports = api;
  }
})(function () {
  "use strict";

  // Refresh a little before expiry so a request never leaves with a token about to die.
  var REFRESH_MARGIN_MS = 30000;
  var TOKENS_KEY = "sfx.tokens";

  /**
   * Every failure the UI handles: HTTP errors carry the server's envelope code; "network" means the
   * server could not be reached, "cancelled" that the user aborted, "signed_out" that sign-in is needed.
   */
  function ApiError(status, code, message, details, retryAfter) {
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.message = message;
    this.details = details || {};
    this.retryAfter = retryAfter || 0;
  }
  ApiError.prototype = Object.create(Error.prototype);
  ApiError.prototype.constructor = ApiError;

  function parseRetryAfter(value, nowMs) {
    if (!value) return 0;
    var seconds = Number(value);
    if (isFinite(seconds)) return Math.max(0, Math.ceil(seconds));
    var date = Date.parse(value);
    return isNaN(date) ? 0 : Math.max(0, Math.ceil((date - nowMs) / 1000));
  }

  function isAbort(error) {
    return !!error && (error.name === "AbortError" || error.code === 20);
  }

  /** Token pair over a Web Storage-like object (tests); the panel uses the storage adapter's tokenStore. */
  function TokenStore(storage) {
    this.storage = storage;
  }
  TokenStore.prototype.get = function () {
    try {
      var raw = this.storage.getItem(TOKENS_KEY);
      return raw ? JSON.parse(raw) : null;
    } catch (e) {
      return null;
    }
  };
  TokenStore.prototype.set = function (tokens) {
    this.storage.setItem(TOKENS_KEY, JSON.stringify(tokens));
  };
  TokenStore.prototype.clear = function () {
    this.storage.removeItem(TOKENS_KEY);
  };

  /**
   * @param {{baseUrl: string, fetch: Function, tokens: TokenStore, now?: () => number, onSignedOut?: Function,
   *          panelVersion?: string, panelProduct?: string}} options
   *   panelVersion/panelProduct ("cep" or "uxp") go out on every call, so the server can answer 426
   *   panel_outdated to a build it no longer supports and count which builds are in use.
   */
  function Client(options) {
    this.baseUrl = String(options.baseUrl || "").replace(/\/+$/, "");
    this.panelVersion = options.panelVersion || "";
    this.panelProduct = options.panelProduct || "";
    this.fetchImpl = options.fetch;
    this.tokens = options.tokens;
    this.now = options.now || Date.now;
    this.onSignedOut = options.onSignedOut || function () {};
    this.refreshing = null;
  }

  Client.prototype.url = function (path) {
    if (/^https?:\/\//i.test(path)) return path;
    return this.baseUrl + (path.charAt(0) === "/" ? path : "/" + path);
  };

  Client.prototype.isSignedIn = function () {
    var t = this.tokens.get();
    return !!(t && t.refresh_token);
  };

  Client.prototype.saveTokens = function (body) {
    var tokens = {
      access_token: body.access_token,
      refresh_token: body.refresh_token,
      expires_at: this.now() + (Number(body.expires_in) || 900) * 1000,
      user: body.user || (this.tokens.get() || {}).user || null,
    };
    this.tokens.set(tokens);
    return tokens;
  };

  Client.prototype.send = function (method, path, opts) {
    var headers = { Accept: "application/json" };
    if (this.panelVersion) headers["X-Panel-Version"] = this.panelVersion;
    if (this.panelProduct) headers["X-Panel-Product"] = this.panelProduct;
    var extra = opts.headers || {};
    for (var name in extra) headers[name] = extra[name];
    var init = { method: method, headers: headers, signal: opts.signal };
    if (opts.body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(opts.body);
    }
    if (opts.token) headers.Authorization = "Bearer " + opts.token;
    return this.fetchImpl(this.url(path), init).then(null, function (error) {
      if (isAbort(error)) throw new ApiError(0, "cancelled", "Cancelled.");
      throw new ApiError(0, "network", "Can't reach the server. Check your connection.", { cause: String(error && error.message) });
    });
  };

  Client.prototype.errorFrom = function (response) {
    var retryAfter = parseRetryAfter(response.headers.get("Retry-After"), this.now());
    return response.text().then(
      function (text) {
        var envelope = null;
        try {
          envelope = JSON.parse(text).error;
        } catch (e) {
          envelope = null;
        }
        envelope = envelope || {};
        var details = envelope.details || {};
        return new ApiError(
          response.status,
          envelope.code || "http_" + response.status,
          envelope.message || "The server answered " + response.status + ".",
          details,
          retryAfter || Number(details.retry_after) || 0
        );
      },
      function () {
        return new ApiError(response.status, "http_" + response.status, "The server answered " + response.status + ".", {}, retryAfter);
      }
    );
  };

  /** One refresh at a time: concurrent requests that find the token stale all wait for the same one. */
  Client.prototype.refresh = function () {
    var self = this;
    if (self.refreshing) return self.refreshing;
    var current = self.tokens.get();
    if (!current || !current.refresh_token) {
      self.signedOut();
      return Promise.reject(new ApiError(401, "signed_out", "Please sign in."));
    }
    self.refreshing = self
      .send("POST", "/v1/auth/refresh", { body: { refresh_token: current.refresh_token } })
      .then(function (response) {
        if (response.ok) return response.json().then(self.saveTokens.bind(self));
        return self.errorFrom(response).then(function (error) {
          // The server refused this refresh token (expired, revoked, reused): the session is over.
          if (error.status === 400 || error.status === 401 || error.status === 403) {
            self.signedOut();
            throw new ApiError(401, "signed_out", "Your session ended. Please sign in again.");
          }
          throw error;
        });
      });
    self.refreshing.then(
      function () {
        self.refreshing = null;
      },
      function () {
        self.refreshing = null;
      }
    );
    return self.refreshing;
  };

  Client.prototype.signedOut = function () {
    this.tokens.clear();
    this.onSignedOut();
  };

  Client.prototype.accessToken = function () {
    var t = this.tokens.get();
    if (!t || !t.refresh_token) return Promise.reject(new ApiError(401, "signed_out", "Please sign in."));
    if (t.access_token && t.expires_at - REFRESH_MARGIN_MS > this.now()) return Promise.resolve(t.access_token);
    return this.refresh().then(function (fresh) {
      return fresh.access_token;
    });
  };

  /** An authenticated request; a 401 triggers one refresh and one retry. Resolves with the Response. */
  Client.prototype.request = function (method, path, opts) {
    var self = this;
    opts = opts || {};
    var authed = opts.auth !== false;
    function attempt(token, retried) {
      var sendOpts = { body: opts.body, headers: opts.headers, signal: opts.signal, token: token };
      return self.send(method, path, sendOpts).then(function (response) {
        if (response.ok) return response;
        if (response.status === 401 && authed && !retried) {
          return self.refresh().then(function (fresh) {
            return attempt(fresh.access_token, true);
          });
        }
        return self.errorFrom(response).then(function (error) {
          if (response.status === 401 && authed) self.signedOut();
          throw error;
        });
      });
    }
    if (!authed) return attempt(null, true);
    return self.accessToken().then(function (token) {
      return attempt(token, false);
    });
  };

  Client.prototype.json = function (method, path, opts) {
    return this.request(method, path, opts).then(function (response) {
      return response.status === 204 ? null : response.json();
    });
  };

  Client.prototype.login = function (email, password, deviceName) {
    var self = this;
    return self.json("POST", "/v1/auth/login", { auth: false, body: { email: email, password: password, device_name: deviceName } }).then(function (body) {
      return self.saveTokens(body);
    });
  };

  /** Tells the server to revoke this device's refresh token; local sign-out happens whatever it says. */
  Client.prototype.logout = function () {
    var self = this;
    var t = self.tokens.get();
    self.tokens.clear();
    if (!t || !t.refresh_token) return Promise.resolve();
    return self
      .send("POST", "/v1/auth/logout", { body: { refresh_token: t.refresh_token }, token: t.access_token })
      .then(
        function () {},
        function () {}
      );
  };

  Client.prototype.me = function () {
    return this.json("GET", "/v1/me");
  };
  Client.prototype.pricing = function () {
    return this.json("GET", "/v1/pricing", { auth: false });
  };
  Client.prototype.voices = function () {
    return this.json("GET", "/v1/voices");
  };
  Client.prototype.history = function (params) {
    var query = [];
    for (var key in params) {
      if (params[key] !== undefined && params[key] !== null && params[key] !== "") query.push(key + "=" + encodeURIComponent(params[key]));
    }
    return this.json("GET", "/v1/generations" + (query.length ? "?" + query.join("&") : ""));
  };
  /** GET /v1/queue: how many of this account's requests wait for a free generator, and how many are ahead. */
  Client.prototype.queue = function () {
    return this.json("GET", "/v1/queue");
  };
  Client.prototype.deleteGeneration = function (id) {
    return this.json("DELETE", "/v1/generations/" + encodeURIComponent(id));
  };

  /**
   * POST /v1/sfx or /v1/voice in the JSON form (one document for any number of variations).
   * The Idempotency-Key makes a retry of the same request after a network error free of a second charge.
   */
  Client.prototype.generate = function (kind, body, idempotencyKey, signal) {
    var path = kind === "voice" ? "/v1/voice" : "/v1/sfx";
    return this.json("POST", path, { body: body, signal: signal, headers: { "Idempotency-Key": idempotencyKey } });
  };

  /**
   * POST /v1/assist/{feature} (sfx-prompt, spot, voice-script): LLM help, charged by tokens used. The
   * key makes a retry answer from the stored result, uncharged.
   */
  Client.prototype.assist = function (feature, body, idempotencyKey, signal) {
    return this.json("POST", "/v1/assist/" + feature, { body: body, signal: signal, headers: { "Idempotency-Key": idempotencyKey } });
  };

  /**
   * Audio bytes of a generation (a download_url or an id); downloading again never charges.
   * onProgress(received, total) follows the download when the runtime can stream the body.
   */
  Client.prototype.audio = function (urlOrId, signal, onProgress) {
    var path = /^(https?:)?\//i.test(urlOrId) ? urlOrId : "/v1/generations/" + encodeURIComponent(urlOrId) + "/audio";
    return this.request("GET", path, { signal: signal, headers: { Accept: "audio/*" } }).then(function (response) {
      var total = Number(response.headers.get("Content-Length")) || 0;
      if (!onProgress || !response.body || typeof response.body.getReader !== "function") return response.arrayBuffer();
      var reader = response.body.getReader();
      var chunks = [];
      var received = 0;
      onProgress(0, total);
      function pump() {
        return reader.read().then(function (step) {
          if (step.done) {
            var out = new Uint8Array(received);
            var at = 0;
            for (var i = 0; i < chunks.length; i++) {
              out.set(chunks[i], at);
              at += chunks[i].length;
            }
            return out.buffer;
          }
          chunks.push(step.value);
          received += step.value.length;
          onProgress(received, total);
          return pump();
        });
      }
      return pump().then(null, function (error) {
        if (isAbort(error)) throw new ApiError(0, "cancelled", "Cancelled.");
        throw new ApiError(0, "network", "The download was interrupted. Check your connection.", { cause: String(error && error.message) });
      });
    });
  };

  /**
   * Idempotency keys for generation requests: a new key for a new request, the same key when the very
   * same request is sent again after a network error (the server then answers the first result).
   */
  function KeyRing(uuid) {
    this.uuid = uuid;
    this.last = null;
  }
  KeyRing.prototype.keyFor = function (kind, body) {
    var signature = kind + ":" + JSON.stringify(body);
    if (this.last && this.last.signature === signature && this.last.retryable) return this.last.key;
    this.last = { signature: signature, key: this.uuid(), retryable: false };
    return this.last.key;
  };
  /** Called with the outcome: only a lost answer (network, timeout, still running) keeps the key for a retry. */
  KeyRing.prototype.settle = function (error) {
    if (!this.last) return;
    this.last.retryable = !!error && (error.code === "network" || error.code === "idempotency_in_progress" || error.status === 504);
  };

  function uuid() {
    var c = typeof crypto !== "undefined" ? crypto : null;
    if (c && typeof c.randomUUID === "function") return c.randomUUID();
    var bytes = new Uint8Array(16);
    c.getRandomValues(bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    var hex = "";
    for (var i = 0; i < 16; i++) hex += (bytes[i] + 0x100).toString(16).slice(1);
    return hex.slice(0, 8) + "-" + hex.slice(8, 12) + "-" + hex.slice(12, 16) + "-" + hex.slice(16, 20) + "-" + hex.slice(20);
  }

  return { Client: Client, ApiError: ApiError, TokenStore: TokenStore, KeyRing: KeyRing, uuid: uuid, parseRetryAfter: parseRetryAfter };
});
