// A simulated `premierepro` module (Premiere's UXP API), following the shapes and rules of the npm
// types @adobe/premierepro 26.3 so the UXP host adapter can run its contract tests without Premiere:
//   - every getter that is async in the types is async here (returns a Promise);
//   - create*Action must be called inside project.lockedAccess() (26.3's breaking change), and an
//     Action only does something when added to the CompoundAction of executeTransaction(), which
//     itself must run inside lockedAccess; nothing applies if the transaction callback throws;
//   - times are TickTime objects (254016000000 ticks per second), never bare numbers;
//   - importFiles answers true even when a file was missing or nothing was imported;
//   - tracks can be locked, but the API has no isLocked(): a locked track silently refuses edits.
// Written as a plain script so the browser's UXP-like harness runs the same module (window.PremiereproSim).
(function (factory) {
  var api = factory();
  if (typeof module === "object" && module.exports && typeof window === "undefined") module.exports = api;
  else window.PremiereproSim = api;
})(function () {
  "use strict";

  var TICKS_PER_SECOND = 254016000000;
  var TYPE_CLIP = 1;
  var TYPE_BIN = 2;
  var TYPE_ROOT = 3;

  function TickTime(ticks) {
    this.ticksNumber = Math.round(ticks);
    this.ticks = String(this.ticksNumber);
    this.seconds = this.ticksNumber / TICKS_PER_SECOND;
  }
  TickTime.prototype.add = function (t) {
    return new TickTime(this.ticksNumber + t.ticksNumber);
  };
  TickTime.prototype.equals = function (t) {
    return t instanceof TickTime && t.ticksNumber === this.ticksNumber;
  };
  var TickTimeStatic = {
    createWithSeconds: function (s) {
      if (typeof s !== "number" || !isFinite(s)) throw new TypeError("createWithSeconds needs a number");
      return new TickTime(s * TICKS_PER_SECOND);
    },
    createWithTicks: function (t) {
      if (typeof t !== "string") throw new TypeError("createWithTicks needs a string");
      return new TickTime(Number(t));
    },
    TIME_ZERO: new TickTime(0),
  };

  function requireTickTime(t, what) {
    if (!(t instanceof TickTime)) throw new TypeError(what + " must be a TickTime (got " + typeof t + ")");
  }

  var nextId = 1;

  function Action(project, label, apply) {
    this._project = project;
    this._label = label;
    this._apply = apply;
  }

  function Sim(options) {
    var world = this;
    options = options || {};
    var exists = options.exists || function () { return true; };
    // The simulated Premiere runs on macOS: "/" separates folders, a backslash is part of a name.
    var basename = function (p) { return String(p).split("/").pop(); };
    world.log = [];
    world.revealed = [];
    world.sourceMonitor = { opened: null, playing: false };
    world.host = { version: options.hostVersion || "26.3.0" };

    function Item(project, spec) {
      this._project = project;
      this.type = spec.type;
      this.name = spec.name;
      this._id = "item-" + nextId++;
      this._mediaPath = spec.mediaPath || "";
      this._duration = spec.duration || 0;
      this._children = [];
    }
    Item.prototype.getId = function () { return this._id; };
    Item.prototype.getProject = function () { return Promise.resolve(this._project); };
    Item.prototype.getItems = function () {
      if (this.type !== TYPE_BIN && this.type !== TYPE_ROOT) return Promise.reject(new Error("not a folder item"));
      return Promise.resolve(this._children.slice());
    };
    Item.prototype.createBinAction = function (name, makeUnique) {
      var folder = this;
      folder._project._mustBeLocked("createBinAction");
      return new Action(folder._project, "createBin", function () {
        var binName = name;
        if (makeUnique) {
          var n = 2;
          while (folder._children.some(function (c) { return c.type === TYPE_BIN && c.name === binName; })) binName = name + " " + n++;
        }
        world.log.push(["createBin", binName]);
        folder._children.push(new Item(folder._project, { type: TYPE_BIN, name: binName }));
      });
    };
    Item.prototype.getMediaFilePath = function () { return Promise.resolve(this._mediaPath); };

    function Clip(start, end, item, name) {
      this._start = start;
      this._end = end;
      this._item = item;
      this._name = name;
    }
    Clip.prototype.getStartTime = function () { return Promise.resolve(TickTimeStatic.createWithSeconds(this._start)); };
    Clip.prototype.getEndTime = function () { return Promise.resolve(TickTimeStatic.createWithSeconds(this._end)); };
    Clip.prototype.getName = function () { return Promise.resolve(this._name); };
    Clip.prototype.getProjectItem = function () { return Promise.resolve(this._item); };

    function Track(seq, index, spec) {
      this._seq = seq;
      this._index = index;
      this.name = spec.name || "";
      this.id = index;
      this._locked = !!spec.locked;
      this._clips = (spec.clips || []).map(function (c) { return new Clip(c[0], c[1], null, c[2] || "existing clip"); });
    }
    Track.prototype.getIndex = function () { return Promise.resolve(this._index); };
    Track.prototype.isMuted = function () { return Promise.resolve(false); };
    Track.prototype.getTrackItems = function (type, includeEmpty) {
      if (type !== 1) return [];
      return this._clips.slice().sort(function (a, b) { return a._start - b._start; });
    };
    Track.prototype._overwrite = function (item, start) {
      var end = start + (item._duration || 1);
      this._clips = this._clips.filter(function (c) { return !(c._start < end && c._end > start); });
      this._clips.push(new Clip(start, end, item, item.name));
    };

    function Sequence(project, spec) {
      var seq = this;
      this._project = project;
      this.name = spec.name || "Main edit";
      this.guid = { toString: function () { return "seq-" + seq.name.replace(/\W+/g, "-").toLowerCase(); } };
      this._fps = spec.fps || 25;
      this.playhead = spec.playhead || 0;
      this._duration = spec.duration || 0;
      this.ignoreOverwrite = false;
      this._tracks = (spec.tracks || [{}, {}, {}]).map(function (t, i) { return new Track(seq, i, t); });
      this._markers = (spec.markers || []).map(function (m, i) {
        return { start: m[0], name: m[1], comments: m[2], duration: m[3] || 0, guid: "marker-" + i };
      });
    }
    Sequence.prototype.getPlayerPosition = function () { return Promise.resolve(TickTimeStatic.createWithSeconds(this.playhead)); };
    /** The end of the last clip, or the length the test gave. */
    Sequence.prototype.getEndTime = function () {
      var end = this._duration;
      this._tracks.forEach(function (t) { t._clips.forEach(function (c) { end = Math.max(end, c._end); }); });
      return Promise.resolve(TickTimeStatic.createWithSeconds(end));
    };
    Sequence.prototype.getAudioTrackCount = function () { return Promise.resolve(this._tracks.length); };
    Sequence.prototype.getAudioTrack = function (i) {
      var t = this._tracks[i];
      return t ? Promise.resolve(t) : Promise.reject(new Error("no audio track " + i));
    };
    Sequence.prototype.getTimebase = function () { return Promise.resolve(String(Math.round(TICKS_PER_SECOND / this._fps))); };
    Sequence.prototype.track = function (i) { return this._tracks[i]; };

    function Project(spec) {
      this.name = spec.name || "Film.prproj";
      this.path = spec.path === undefined ? "/Users/editor/Film/Film.prproj" : spec.path;
      this.guid = { toString: function () { return "project-1"; } };
      this._root = new Item(this, { type: TYPE_ROOT, name: "root" });
      this._sequence = null;
      this._locked = 0;
      this._transaction = null;
      this.durations = spec.durations || {};
      this.importNothing = !!spec.importNothing;
    }
    Project.prototype._mustBeLocked = function (what) {
      if (!this._locked) throw new Error(what + ": Action objects must be created inside project.lockedAccess()");
    };
    Project.prototype.getActiveSequence = function () { return Promise.resolve(this._sequence); };
    Project.prototype.getRootItem = function () { return Promise.resolve(this._root); };
    Project.prototype.importFiles = function (paths, suppressUI, targetBin, asNumberedStills) {
      var project = this;
      if (project._locked) return Promise.reject(new Error("importFiles cannot run inside lockedAccess"));
      var target = targetBin || project._root;
      world.log.push(["importFiles", paths.slice(), target.name, suppressUI, asNumberedStills]);
      if (project.importNothing) return Promise.resolve(true);
      // exists may answer at once (Node) or later (the browser harness asks the test's filesystem).
      return Promise.all(paths.map(function (p) { return exists(p); })).then(function (found) {
        paths.forEach(function (p, i) {
          // Like Premiere: a missing file is skipped and the call still answers true.
          if (!found[i]) return;
          target._children.push(new Item(project, { type: TYPE_CLIP, name: basename(p), mediaPath: p, duration: project.durations[p] || 2 }));
        });
        return true;
      });
    };
    Project.prototype.lockedAccess = function (callback) {
      this._locked++;
      try {
        callback();
      } finally {
        this._locked--;
      }
    };
    Project.prototype.executeTransaction = function (callback, undoString) {
      var project = this;
      if (!project._locked) throw new Error("executeTransaction must run inside project.lockedAccess()");
      var actions = [];
      var open = true;
      var compound = {
        addAction: function (action) {
          if (!open) throw new Error("addAction after the transaction ended");
          if (!(action instanceof Action)) throw new TypeError("addAction needs an Action");
          actions.push(action);
          return true;
        },
        get empty() { return actions.length === 0; },
      };
      try {
        callback(compound);
      } catch (e) {
        open = false;
        return false; // nothing applies
      }
      open = false;
      world.log.push(["transaction", undoString || "", actions.map(function (a) { return a._label; })]);
      actions.forEach(function (a) { a._apply(); });
      return true;
    };
    Project.prototype.binNamed = function (name, parent) {
      var list = (parent || this._root)._children;
      for (var i = 0; i < list.length; i++) {
        if (list[i].type === TYPE_BIN && list[i].name === name) return list[i];
        if (list[i].type === TYPE_BIN) {
          var found = this.binNamed(name, list[i]);
          if (found) return found;
        }
      }
      return null;
    };
    Project.prototype.addBin = function (name, parent) {
      var bin = new Item(this, { type: TYPE_BIN, name: name });
      (parent || this._root)._children.push(bin);
      return bin;
    };

    var project = options.project === null ? null : new Project(options.project || {});
    if (project && options.sequence !== null) project._sequence = new Sequence(project, options.sequence || {});
    world.project = project;
    world.sequence = project ? project._sequence : null;
    world.calls = function (kind) {
      return world.log.filter(function (e) { return e[0] === kind; });
    };

    var editorFor = function (seq) {
      return {
        createOverwriteItemAction: function (projectItem, time, videoTrackIndex, audioTrackIndex) {
          seq._project._mustBeLocked("createOverwriteItemAction");
          requireTickTime(time, "time");
          if (typeof videoTrackIndex !== "number" || typeof audioTrackIndex !== "number") throw new TypeError("track indexes must be numbers");
          return new Action(seq._project, "overwrite", function () {
            world.log.push(["overwrite", audioTrackIndex, projectItem && projectItem.name, time.seconds]);
            var track = seq._tracks[audioTrackIndex];
            // Premiere refuses edits on a locked or missing track without an error.
            if (!track || track._locked || seq.ignoreOverwrite || !projectItem) return;
            track._overwrite(projectItem, time.seconds);
          });
        },
        createInsertProjectItemAction: function () {
          throw new Error("the panel never ripples the timeline: insert is not used");
        },
      };
    };

    world.module = {
      Project: {
        getActiveProject: function () { return Promise.resolve(project); },
      },
      ProjectItem: { TYPE_CLIP: TYPE_CLIP, TYPE_BIN: TYPE_BIN, TYPE_ROOT: TYPE_ROOT, TYPE_FILE: 4, cast: function (x) { return x; } },
      FolderItem: {
        cast: function (item) {
          if (item.type !== TYPE_BIN && item.type !== TYPE_ROOT) throw new Error("not a folder item");
          return item;
        },
      },
      ClipProjectItem: {
        cast: function (item) {
          if (item.type !== TYPE_CLIP) throw new Error("not a clip item");
          return item;
        },
      },
      SequenceEditor: { getEditor: editorFor },
      TickTime: TickTimeStatic,
      Markers: {
        getMarkers: function (seq) {
          return Promise.resolve({
            getMarkers: function () {
              return seq._markers.map(function (m) {
                return {
                  guid: m.guid,
                  getStart: function () { return TickTimeStatic.createWithSeconds(m.start); },
                  getDuration: function () { return m.duration ? TickTimeStatic.createWithSeconds(m.duration) : TickTimeStatic.TIME_ZERO; },
                  getName: function () { return m.name || ""; },
                  getComments: function () { return m.comments || ""; },
                };
              });
            },
          });
        },
      },
      SourceMonitor: {
        openFilePath: function (p) {
          world.sourceMonitor.opened = p;
          return Promise.resolve(exists(p));
        },
        openProjectItem: function (item) {
          world.sourceMonitor.opened = item._mediaPath;
          return Promise.resolve(true);
        },
        play: function (speed) {
          world.sourceMonitor.playing = speed === undefined ? true : speed !== 0;
          world.log.push(["play", speed === undefined ? 1 : speed]);
          return Promise.resolve(true);
        },
        closeClip: function () {
          world.sourceMonitor.opened = null;
          world.sourceMonitor.playing = false;
          return Promise.resolve(true);
        },
      },
      Constants: { TrackItemType: { EMPTY: 0, CLIP: 1, TRANSITION: 2, PREVIEW: 3, FEEDBACK: 4 } },
    };
  }

  return {
    create: function (options) { return new Sim(options); },
    TICKS_PER_SECOND: TICKS_PER_SECOND,
  };
});
