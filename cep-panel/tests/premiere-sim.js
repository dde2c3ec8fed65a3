// A simulated Premiere Pro object model, just enough of it to run jsx/host.jsx in Node's vm.
//
// It follows the real model's quirks the host must cope with: importFiles answers true even when it
// imported nothing, overwriteClip to a bad place silently does nothing, collections are live and
// indexed with numItems / numTracks / numMarkers, and the host's realm has no ES5 library (no JSON,
// no Array.prototype.forEach, no String.prototype.trim), as in ExtendScript.
"use strict";

const fs = require("node:fs");
const path = require("node:path");
const vm = require("node:vm");

const TICKS_PER_SECOND = 254016000000;
const BIN = 2;
const CLIP = 1;

class Time {
  constructor(seconds) {
    this.seconds = seconds;
    this.ticks = String(Math.round(seconds * TICKS_PER_SECOND));
  }
}

/** A live, index-addressable collection over an array, like Premiere's *Collection objects. */
function collection(items, countName) {
  return new Proxy(items, {
    get(target, prop) {
      if (prop === countName || prop === "length") return target.length;
      if (typeof prop === "string" && /^\d+$/.test(prop)) return target[Number(prop)];
      return undefined;
    },
  });
}

let nextNodeId = 1000;

class ProjectItem {
  constructor(project, { name, type, mediaPath = "", duration = 0 }) {
    this._project = project;
    this.name = name;
    this.type = type;
    this.nodeId = String(nextNodeId++);
    this._mediaPath = mediaPath;
    this._duration = duration;
    this._children = [];
    this.children = collection(this._children, "numItems");
  }
  getMediaPath() {
    return this._mediaPath;
  }
  createBin(name) {
    this._project.log.push(["createBin", name]);
    const bin = new ProjectItem(this._project, { name, type: BIN });
    this._children.push(bin);
    return bin;
  }
}

class Track {
  constructor(sequence, { name = "", locked = false, clips = [] }) {
    this._sequence = sequence;
    this.name = name;
    this._locked = locked;
    this._clips = [];
    this.clips = collection(this._clips, "numItems");
    for (const [start, end, label] of clips) this._add(start, end, null, label || "existing clip");
  }
  isLocked() {
    return this._locked;
  }
  setLocked(value) {
    this._locked = Boolean(value);
  }
  _add(start, end, projectItem, name) {
    this._clips.push({ start: new Time(start), end: new Time(end), projectItem, name });
    this._clips.sort((a, b) => a.start.seconds - b.start.seconds);
  }
  overwriteClip(item, time) {
    const seconds = typeof time === "number" ? time : time.seconds;
    this._sequence._project.log.push(["overwriteClip", this._sequence._tracks.indexOf(this), item && item.name, seconds]);
    if (this._sequence.ignoreOverwrite || !item) return true;
    const end = seconds + (item._duration || 1);
    // Overwrite semantics: whatever was under the new clip is cut away.
    for (let i = this._clips.length - 1; i >= 0; i--) {
      const c = this._clips[i];
      if (c.start.seconds < end && c.end.seconds > seconds) this._clips.splice(i, 1);
    }
    this._add(seconds, end, item, item.name);
    return true;
  }
}

class MarkerCollection {
  constructor(markers) {
    this._markers = markers.map(([start, name, comments]) => ({
      start: new Time(start),
      end: new Time(start),
      name,
      comments,
    }));
  }
  get numMarkers() {
    return this._markers.length;
  }
  getFirstMarker() {
    return this._markers[0];
  }
  getNextMarker(marker) {
    return this._markers[this._markers.indexOf(marker) + 1];
  }
}

class Sequence {
  constructor(project, { name = "Main edit", fps = 25, playhead = 0, tracks = [{}, {}, {}], markers = [], duration = 0 }) {
    this._project = project;
    this._duration = duration;
    this.name = name;
    this.sequenceID = "seq-" + name.replace(/\W+/g, "-").toLowerCase();
    this.timebase = String(TICKS_PER_SECOND / fps);
    this.playhead = playhead;
    this.ignoreOverwrite = false;
    this._tracks = tracks.map((spec) => new Track(this, spec));
    this.audioTracks = collection(this._tracks, "numTracks");
    this.markers = new MarkerCollection(markers);
  }
  getPlayerPosition() {
    return new Time(this.playhead);
  }
  /** Like Premiere: the end of the last clip (or the length the test gave), in ticks, as a string. */
  get end() {
    let seconds = this._duration;
    for (const t of this._tracks) for (const c of t._clips) seconds = Math.max(seconds, c.end.seconds);
    return String(Math.round(seconds * TICKS_PER_SECOND));
  }
  track(index) {
    return this._tracks[index];
  }
}

class Project {
  constructor({ name = "Film.prproj", path: projectPath = "/Users/editor/Film/Film.prproj", durations = {}, importNothing = false }) {
    this.name = name;
    this.path = projectPath;
    this.log = [];
    this.durations = durations;
    this.importNothing = importNothing;
    this.rootItem = new ProjectItem(this, { name: "root", type: 3 });
    this.activeSequence = null;
  }
  importFiles(paths, suppressUI, bin, asNumberedStills) {
    this.log.push(["importFiles", paths.slice(), bin ? bin.name : null, suppressUI, asNumberedStills]);
    if (this.importNothing) return true;
    for (const p of paths) {
      // Like Premiere: a missing file is silently skipped and the call still answers true.
      if (!fs.existsSync(p)) continue;
      const target = bin || this.rootItem;
      target._children.push(new ProjectItem(this, { name: path.basename(p), type: CLIP, mediaPath: p, duration: this.durations[p] || 2 }));
    }
    return true;
  }
  addBin(name, parent = this.rootItem) {
    const bin = new ProjectItem(this, { name, type: BIN });
    parent._children.push(bin);
    return bin;
  }
  binNamed(name, parent = this.rootItem) {
    for (const child of parent._children) {
      if (child.type === BIN && child.name === name) return child;
      if (child.type === BIN) {
        const found = this.binNamed(name, child);
        if (found) return found;
      }
    }
    return null;
  }
  calls(kind) {
    return this.log.filter((entry) => entry[0] === kind);
  }
}

function makeFileClasses(revealed) {
  class Folder {
    constructor(p) {
      this.fsName = p;
    }
    execute() {
      revealed.push(this.fsName);
      return fs.existsSync(this.fsName);
    }
  }
  class File {
    constructor(p) {
      this.fsName = p;
      this.displayName = path.basename(p);
    }
    get exists() {
      return fs.existsSync(this.fsName) && fs.statSync(this.fsName).isFile();
    }
    get parent() {
      return new Folder(path.dirname(this.fsName));
    }
  }
  return { File, Folder };
}

// ExtendScript's engine is ES3: take away what a host script could wrongly lean on.
const STRIP_ES5 = `
  (function (strip) {
    strip(Array.prototype, ["forEach", "map", "filter", "reduce", "some", "every", "indexOf", "lastIndexOf", "find", "findIndex", "includes"]);
    strip(String.prototype, ["trim", "includes", "startsWith", "endsWith", "padStart", "repeat"]);
    strip(Object, ["keys"]);
    strip(Array, ["isArray"]);
    strip(Date.prototype, ["toISOString"]);
  })(function (target, names) {
    for (var i = 0; i < names.length; i++) delete target[names[i]];
  });
  delete this.JSON;
`;

/**
 * Builds a Premiere: `premiere({project: {...} | null, sequence: {...} | null})`.
 * Returns {context, app, project, sequence, revealed, evalScript(script) -> string}.
 */
function premiere({ project = {}, sequence = {}, hostFile = path.join(__dirname, "..", "cep", "host.jsx") } = {}) {
  const revealed = [];
  const { File, Folder } = makeFileClasses(revealed);
  const proj = project === null ? null : new Project(project);
  const seq = proj && sequence !== null ? new Sequence(proj, sequence) : null;
  if (proj) proj.activeSequence = seq;
  const appObject = { version: "24.6.0", project: proj || { rootItem: null } };
  const context = vm.createContext({ app: appObject, File, Folder, $: { os: "Macintosh OS 14.5.0" } });
  vm.runInContext(STRIP_ES5, context);
  vm.runInContext(fs.readFileSync(hostFile, "utf8"), context, { filename: hostFile });
  return {
    context,
    app: appObject,
    project: proj,
    sequence: seq,
    revealed,
    evalScript(script) {
      return vm.runInContext(script, context);
    },
  };
}

module.exports = { premiere, Time, TICKS_PER_SECOND };
