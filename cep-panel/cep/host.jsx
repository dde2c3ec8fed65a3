// SFX Studio: ExtendScript side of the Premiere Pro panel.
//
// ExtendScript is ES3 with no JSON object, and an uncaught error reaches the panel only as the
// string "EvalScript error.". So the panel calls exactly one entry point,
//     SFXHost.call("<name>", "<encodeURIComponent(JSON.stringify(args))>")
// which never throws and always answers a JSON string:
//     {"ok":true,"result":...}  or  {"ok":false,"error":{"code":"...","message":"..."}}
// Keep every call short: this runs on Premiere's main thread.

/** @typedef {{code: string, message: string, sfxHostError: boolean}} HostFailure */

var SFXJSON = (function () {
  /** @type {{[ch: string]: string}} */
  var ESCAPES = { '"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t" };

  /** @param {string} s */
  function quote(s) {
    var out = '"';
    for (var i = 0; i < s.length; i++) {
      var ch = s.charAt(i);
      var code = s.charCodeAt(i);
      if (ESCAPES.hasOwnProperty(ch)) {
        out += ESCAPES[ch];
      } else if (code < 0x20 || code === 0x2028 || code === 0x2029) {
        out += "\\u" + ("0000" + code.toString(16)).slice(-4);
      } else {
        out += ch;
      }
    }
    return out + '"';
  }

  /** @param {any} value @returns {string} */
  function stringify(value) {
    if (value === null || value === undefined) return "null";
    var t = typeof value;
    if (t === "string") return quote(value);
    if (t === "number") return isFinite(value) ? String(value) : "null";
    if (t === "boolean") return value ? "true" : "false";
    if (value instanceof Array) {
      var items = [];
      for (var i = 0; i < value.length; i++) items.push(stringify(value[i]));
      return "[" + items.join(",") + "]";
    }
    var parts = [];
    for (var key in value) {
      if (value.hasOwnProperty(key) && value[key] !== undefined && typeof value[key] !== "function") {
        parts.push(quote(key) + ":" + stringify(value[key]));
      }
    }
    return "{" + parts.join(",") + "}";
  }

  /** A small recursive-descent parser: never eval() what arrives from outside. @param {string} text */
  function parse(text) {
    var pos = 0;

    /** @param {string} why @returns {never} */
    function bad(why) {
      throw { code: "bad_arguments", message: "invalid JSON arguments (" + why + " at " + pos + ")", sfxHostError: true };
    }
    function ws() {
      while (pos < text.length && " \t\n\r".indexOf(text.charAt(pos)) >= 0) pos++;
    }
    /** @returns {any} */
    function value() {
      ws();
      var ch = text.charAt(pos);
      if (ch === "{") return object();
      if (ch === "[") return array();
      if (ch === '"') return string();
      if (ch === "-" || (ch >= "0" && ch <= "9")) return number();
      if (text.substr(pos, 4) === "true") { pos += 4; return true; }
      if (text.substr(pos, 5) === "false") { pos += 5; return false; }
      if (text.substr(pos, 4) === "null") { pos += 4; return null; }
      return bad("unexpected character");
    }
    function object() {
      /** @type {any} */
      var result = {};
      pos++;
      ws();
      if (text.charAt(pos) === "}") { pos++; return result; }
      while (true) {
        ws();
        if (text.charAt(pos) !== '"') bad("expected a key");
        var key = string();
        ws();
        if (text.charAt(pos) !== ":") bad("expected ':'");
        pos++;
        result[key] = value();
        ws();
        var sep = text.charAt(pos++);
        if (sep === "}") return result;
        if (sep !== ",") bad("expected ',' or '}'");
      }
    }
    function array() {
      /** @type {any[]} */
      var result = [];
      pos++;
      ws();
      if (text.charAt(pos) === "]") { pos++; return result; }
      while (true) {
        result.push(value());
        ws();
        var sep = text.charAt(pos++);
        if (sep === "]") return result;
        if (sep !== ",") bad("expected ',' or ']'");
      }
    }
    function string() {
      var out = "";
      pos++;
      while (pos < text.length) {
        var ch = text.charAt(pos++);
        if (ch === '"') return out;
        if (ch !== "\\") { out += ch; continue; }
        var esc = text.charAt(pos++);
        if (esc === "u") {
          var hex = text.substr(pos, 4);
          if (!/^[0-9a-fA-F]{4}$/.test(hex)) bad("bad unicode escape");
          out += String.fromCharCode(parseInt(hex, 16));
          pos += 4;
        } else if (esc === "b") out += "\b";
        else if (esc === "f") out += "\f";
        else if (esc === "n") out += "\n";
        else if (esc === "r") out += "\r";
        else if (esc === "t") out += "\t";
        else if (esc === '"' || esc === "\\" || esc === "/") out += esc;
        else bad("bad escape");
      }
      return bad("unterminated string");
    }
    function number() {
      var match = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+\-]?[0-9]+)?/.exec(text.substr(pos));
      if (!match) return bad("bad number");
      pos += match[0].length;
      return parseFloat(match[0]);
    }

    var result = value();
    ws();
    if (pos !== text.length) bad("trailing characters");
    return result;
  }

  return { stringify: stringify, parse: parse };
})();

var SFXHost = (function () {
  var VERSION = "1.0.0";
  var TICKS_PER_SECOND = 254016000000;
  var DEFAULT_BIN = "AI SFX";
  var BIN_TYPE = 2;
  // A clip that merely touches the new one (ends exactly at the playhead) is not an overlap.
  var EPSILON = 0.0005;

  /** @param {string} code @param {string} message @returns {never} */
  function fail(code, message) {
    throw { code: code, message: message, sfxHostError: true };
  }

  /** @param {string} path */
  function samePath(path) {
    return String(path).replace(/\\/g, "/").toLowerCase();
  }

  function requireProject() {
    if (!app.project || !app.project.rootItem) fail("no_project", "Open a Premiere Pro project first.");
    return app.project;
  }

  /** @param {any} args */
  function requireFile(args) {
    if (!args || typeof args.path !== "string" || args.path === "") fail("bad_arguments", "No file path was given.");
    var file = new File(args.path);
    if (!file.exists) fail("file_missing", "The file is missing: " + args.path);
    return file;
  }

  /** @param {ProjectItem} parent @param {string} name @returns {ProjectItem | null} */
  function findBin(parent, name) {
    var children = parent.children;
    for (var i = 0; i < children.numItems; i++) {
      var child = children[i];
      if (child.type === BIN_TYPE && child.name === name) return child;
    }
    for (var j = 0; j < children.numItems; j++) {
      if (children[j].type === BIN_TYPE) {
        var nested = findBin(children[j], name);
        if (nested) return nested;
      }
    }
    return null;
  }

  /** @param {string} name */
  function findOrCreateBin(name) {
    var project = requireProject();
    var binName = name && String(name).length ? String(name) : DEFAULT_BIN;
    var bin = findBin(project.rootItem, binName);
    if (bin) return { bin: bin, created: false };
    bin = project.rootItem.createBin(binName);
    if (!bin) bin = findBin(project.rootItem, binName);
    if (!bin) fail("bin_failed", "Could not create the bin \"" + binName + "\".");
    return { bin: /** @type {ProjectItem} */ (bin), created: true };
  }

  /** @param {ProjectItem} bin @param {string} path @returns {ProjectItem | null} */
  function findItemByPath(bin, path) {
    var wanted = samePath(path);
    var children = bin.children;
    for (var i = 0; i < children.numItems; i++) {
      var child = children[i];
      if (child.type === BIN_TYPE) continue;
      var media = "";
      try {
        media = child.getMediaPath();
      } catch (e) {
        media = "";
      }
      if (media && samePath(media) === wanted) return child;
    }
    return null;
  }

  /** Imports once: the same file asked for twice reuses the item already in the bin. @param {File} file @param {string} binName */
  function importIntoBin(file, binName) {
    var found = findOrCreateBin(binName);
    var path = file.fsName;
    var item = findItemByPath(found.bin, path);
    var imported = false;
    if (!item) {
      // importFiles answers true even when nothing was imported, so the bin is searched afterwards.
      app.project.importFiles([path], true, found.bin, false);
      item = findItemByPath(found.bin, path);
      imported = true;
    }
    if (!item) fail("import_failed", "Premiere could not import " + file.displayName + ".");
    return { bin: found.bin, binCreated: found.created, item: /** @type {ProjectItem} */ (item), imported: imported };
  }

  /** @param {Sequence} seq */
  function secondsPerFrame(seq) {
    var ticks = parseFloat(seq.timebase);
    return ticks > 0 ? ticks / TICKS_PER_SECOND : 1 / 30;
  }

  /** @param {Track} track @param {number} start @param {number} end */
  function overlapsClip(track, start, end) {
    var clips = track.clips;
    for (var i = 0; i < clips.numItems; i++) {
      var clip = clips[i];
      if (clip.start.seconds < end - EPSILON && clip.end.seconds > start + EPSILON) return true;
    }
    return false;
  }

  /** @param {Track} track @param {number} index */
  function trackLabel(track, index) {
    var name = track.name ? String(track.name) : "";
    return name && name !== "" ? name : "A" + (index + 1);
  }

  /** The first unlocked audio track with room for [start, end], or the one the user chose. @param {Sequence} seq @param {any} chosen @param {number} start @param {number} end */
  function chooseTrack(seq, chosen, start, end) {
    var tracks = seq.audioTracks;
    if (chosen !== null && chosen !== undefined && chosen !== "auto") {
      var index = parseInt(chosen, 10);
      if (isNaN(index) || index < 0 || index >= tracks.numTracks) {
        fail("track_not_found", "The sequence has no audio track A" + (isNaN(index) ? "?" : index + 1) + ".");
      }
      var track = tracks[index];
      if (track.isLocked()) fail("track_locked", trackLabel(track, index) + " is locked. Unlock it or choose another track.");
      if (overlapsClip(track, start, end)) {
        fail("track_occupied", trackLabel(track, index) + " already has a clip there. Choose another track or Auto.");
      }
      return index;
    }
    for (var i = 0; i < tracks.numTracks; i++) {
      if (!tracks[i].isLocked() && !overlapsClip(tracks[i], start, end)) return i;
    }
    return -1;
  }

  /** @param {Track} track @param {ProjectItem} item @param {string} path @param {number} at @param {number} tolerance */
  function clipLanded(track, item, path, at, tolerance) {
    var wanted = samePath(path);
    var clips = track.clips;
    for (var i = 0; i < clips.numItems; i++) {
      var clip = clips[i];
      if (Math.abs(clip.start.seconds - at) > tolerance) continue;
      var source = clip.projectItem;
      if (!source) continue;
      if (source.nodeId === item.nodeId) return true;
      var media = "";
      try {
        media = source.getMediaPath();
      } catch (e) {
        media = "";
      }
      if (media && samePath(media) === wanted) return true;
    }
    return false;
  }

  function describeProject() {
    if (!app.project || !app.project.rootItem) return null;
    var path = "";
    try {
      path = app.project.path || "";
    } catch (e) {
      path = "";
    }
    return { name: app.project.name, path: path };
  }

  /** @param {Sequence} seq */
  function describeSequence(seq) {
    var tracks = [];
    for (var i = 0; i < seq.audioTracks.numTracks; i++) {
      var track = seq.audioTracks[i];
      tracks.push({ index: i, name: trackLabel(track, i), locked: track.isLocked(), clips: track.clips.numItems });
    }
    var spf = secondsPerFrame(seq);
    return {
      id: seq.sequenceID,
      name: seq.name,
      playhead: seq.getPlayerPosition().seconds,
      frameRate: Math.round((1 / spf) * 1000) / 1000,
      duration: seq.end ? parseFloat(seq.end) / TICKS_PER_SECOND : null,
      audioTracks: tracks
    };
  }

  var calls = {
    ping: function () {
      return { version: VERSION, app: app.version };
    },

    getContext: function () {
      var project = describeProject();
      var seq = project ? app.project.activeSequence : null;
      return { project: project, sequence: seq ? describeSequence(seq) : null };
    },

    /** @param {any} args */
    importToBin: function (args) {
      var file = requireFile(args);
      requireProject();
      var done = importIntoBin(file, args.bin);
      return { bin: done.bin.name, binCreated: done.binCreated, item: done.item.name, imported: done.imported };
    },

    /** @param {any} args */
    importAndPlace: function (args) {
      var file = requireFile(args);
      var project = requireProject();
      var seq = project.activeSequence;
      if (!seq) {
        var binOnly = importIntoBin(file, args.bin);
        return {
          placed: false,
          reason: "no_sequence",
          message: "No active sequence: \"" + binOnly.item.name + "\" was imported into the bin \"" + binOnly.bin.name + "\".",
          bin: binOnly.bin.name,
          item: binOnly.item.name
        };
      }
      var duration = typeof args.duration === "number" && args.duration > 0 ? args.duration : 0;
      var at = typeof args.time === "number" && args.time >= 0 ? args.time : seq.getPlayerPosition().seconds;
      // Choose before importing so a refusal leaves the project untouched.
      var index = chooseTrack(seq, args.track, at, at + duration);
      if (index < 0) {
        fail("no_free_track", "Every unlocked audio track has a clip at the playhead. Free a track, or import to the bin instead.");
      }
      var done = importIntoBin(file, args.bin);
      var track = seq.audioTracks[index];
      track.overwriteClip(done.item, at);
      if (!clipLanded(track, done.item, file.fsName, at, secondsPerFrame(seq))) {
        fail("place_failed", "Premiere did not place the clip on " + trackLabel(track, index) + "; it is in the bin \"" + done.bin.name + "\".");
      }
      return {
        placed: true,
        track: index,
        trackName: trackLabel(track, index),
        time: at,
        bin: done.bin.name,
        item: done.item.name,
        sequence: seq.name
      };
    },

    getMarkers: function () {
      var project = requireProject();
      var seq = project.activeSequence;
      if (!seq) fail("no_sequence", "Open a sequence to see its markers.");
      var markers = [];
      var collection = seq.markers;
      var count = collection.numMarkers;
      var marker = count > 0 ? collection.getFirstMarker() : null;
      while (marker && markers.length < count) {
        markers.push({
          time: marker.start.seconds,
          end: marker.end ? marker.end.seconds : marker.start.seconds,
          name: marker.name || "",
          comments: marker.comments || ""
        });
        marker = collection.getNextMarker(marker);
      }
      return { sequence: seq.name, markers: markers };
    },

    /** @param {any} args */
    revealFile: function (args) {
      var file = requireFile(args);
      var folder = file.parent;
      if (!folder || !folder.execute()) fail("reveal_failed", "Could not open the folder of " + file.displayName + ".");
      return { folder: folder.fsName };
    }
  };

  /** @param {any} error */
  function describeError(error) {
    if (error && error.sfxHostError) return { code: error.code, message: error.message };
    var message = error && error.message ? error.message : String(error);
    var line = error && error.line ? " (line " + error.line + ")" : "";
    return { code: "host_error", message: message + line };
  }

  /** The only entry point the panel evaluates. @param {string} name @param {string} encodedArgs */
  function call(name, encodedArgs) {
    try {
      if (!calls.hasOwnProperty(name)) fail("unknown_call", "Unknown host call: " + name);
      var args = encodedArgs ? SFXJSON.parse(decodeURIComponent(encodedArgs)) : {};
      /** @type {any} */
      var fn = calls[/** @type {keyof typeof calls} */ (name)];
      return SFXJSON.stringify({ ok: true, result: fn(args) });
    } catch (error) {
      return SFXJSON.stringify({ ok: false, error: describeError(error) });
    }
  }

  return { call: call, version: VERSION, defaultBin: DEFAULT_BIN };
})();
