// @ts-check
/*
 * The UXP host adapter: the contract of core/host.js over Premiere's async `premierepro` module
 * (25.6+). Imports with project.importFiles, makes bins with createBinAction and places clips with
 * SequenceEditor.createOverwriteItemAction; every Action is created and run inside
 * project.lockedAccess + executeTransaction, as 26.3 requires. Type-checked against the npm types
 * @adobe/premierepro and @adobe/cc-ext-uxp-types (tsconfig.uxp.json, part of npm test).
 *
 * The API has no isLocked() for tracks: the free-track search skips every track with a clip in the
 * way, reports `locked: null`, and re-reads the track after placing, so a locked track that refused
 * the clip is reported (place_failed) instead of assumed.
 */
(function (factory) {
  if (typeof window !== "undefined" && window.document) {
    /** @type {any} */ (window).SFX = /** @type {any} */ (window).SFX || {};
    /** @type {any} */ (window).SFX.UxpAdapter = factory(/** @type {any} */ (window).SFX.Host);
  } else {
    module.exports = factory(require("../core/host"));
  }
})(
  /** @param {any} Host */
  function (Host) {
    "use strict";

    /** @typedef {import("@adobe/premierepro").premierepro} Ppro */
    /** @typedef {import("@adobe/premierepro").Project} Project */
    /** @typedef {import("@adobe/premierepro").Sequence} Sequence */
    /** @typedef {import("@adobe/premierepro").ProjectItem} ProjectItem */
    /** @typedef {import("@adobe/premierepro").FolderItem} FolderItem */
    /** @typedef {import("@adobe/premierepro").AudioTrack} AudioTrack */
    /** @typedef {{red: number, green: number, blue: number}} RGB */

    var HostError = Host.HostError;
    var MESSAGES = Host.MESSAGES;
    var TICKS_PER_SECOND = 254016000000;
    // UXP's theme names and the panel colours Premiere uses for them.
    /** @type {{[name: string]: RGB}} */
    var THEMES = {
      darkest: { red: 29, green: 29, blue: 29 },
      dark: { red: 35, green: 35, blue: 35 },
      medium: { red: 50, green: 50, blue: 50 },
      light: { red: 214, green: 214, blue: 214 },
      lightest: { red: 240, green: 240, blue: 240 },
    };

    /** @param {string} p */
    function samePath(p) {
      return String(p).replace(/\\/g, "/").toLowerCase();
    }
    /** Windows paths ("C:\\..." or "\\\\server") use backslashes; on macOS a backslash is part of a name. @param {string} p */
    function separator(p) {
      return /^([A-Za-z]:|\\\\)/.test(p) ? /[\\/]/ : /\//;
    }
    /** @param {string} p */
    function basename(p) {
      return String(p).split(separator(String(p))).pop() || "";
    }
    /** @param {string} p */
    function dirname(p) {
      var s = String(p);
      var name = basename(s);
      return s.length > name.length ? s.slice(0, s.length - name.length - 1) || s.charAt(0) : s;
    }

    /**
     * @param {{ppro: Ppro, uxp?: any, exists: (path: string) => Promise<boolean>, document?: any}} deps
     *   exists: whether a file is on disk (importFiles answers true for a missing file too)
     */
    function create(deps) {
      var ppro = deps.ppro;
      var uxp = deps.uxp || {};
      var doc = deps.document || (typeof document !== "undefined" ? document : null);

      /** @returns {Promise<Project>} */
      async function requireProject() {
        var project = await ppro.Project.getActiveProject();
        if (!project) throw new HostError("no_project", MESSAGES.no_project);
        return project;
      }

      /** @param {string} path */
      async function requireFile(path) {
        if (typeof path !== "string" || !path) throw new HostError("bad_arguments", "No file path was given.");
        if (!(await deps.exists(path))) throw new HostError("file_missing", "The file is missing: " + path);
      }

      /**
       * Runs create*Action calls and their transaction where 26.3 wants them: inside lockedAccess.
       * @param {Project} project @param {string} label @param {() => import("@adobe/premierepro").Action[]} makeActions
       */
      function transact(project, label, makeActions) {
        var ok = false;
        project.lockedAccess(function () {
          ok = project.executeTransaction(function (compound) {
            var actions = makeActions();
            for (var i = 0; i < actions.length; i++) compound.addAction(actions[i]);
          }, label);
        });
        return ok;
      }

      /** @param {FolderItem} folder @param {string} name @returns {Promise<FolderItem | null>} */
      async function findBin(folder, name) {
        var items = await folder.getItems();
        /** @type {FolderItem[]} */
        var bins = [];
        for (var i = 0; i < items.length; i++) {
          if (items[i].type !== ppro.ProjectItem.TYPE_BIN) continue;
          var bin = ppro.FolderItem.cast(items[i]);
          if (items[i].name === name) return bin;
          bins.push(bin);
        }
        for (var j = 0; j < bins.length; j++) {
          var nested = await findBin(bins[j], name);
          if (nested) return nested;
        }
        return null;
      }

      /** @param {Project} project @param {string | undefined} name */
      async function findOrCreateBin(project, name) {
        var binName = name && String(name).length ? String(name) : Host.DEFAULT_BIN;
        var root = await project.getRootItem();
        var bin = await findBin(root, binName);
        if (bin) return { bin: bin, name: binName, created: false };
        transact(project, "Create bin " + binName, function () {
          return [root.createBinAction(binName, false)];
        });
        bin = await findBin(root, binName);
        if (!bin) throw new HostError("bin_failed", 'Could not create the bin "' + binName + '".');
        return { bin: bin, name: binName, created: true };
      }

      /** @param {FolderItem} bin @param {string} path @returns {Promise<ProjectItem | null>} */
      async function findItemByPath(bin, path) {
        var wanted = samePath(path);
        var items = await bin.getItems();
        for (var i = 0; i < items.length; i++) {
          if (items[i].type === ppro.ProjectItem.TYPE_BIN) continue;
          var media = "";
          try {
            media = await ppro.ClipProjectItem.cast(items[i]).getMediaFilePath();
          } catch (e) {
            media = "";
          }
          if (media && samePath(media) === wanted) return items[i];
        }
        return null;
      }

      /** Imports once: a file already in the bin is reused. @param {Project} project @param {string} path @param {string | undefined} binName */
      async function importIntoBin(project, path, binName) {
        var found = await findOrCreateBin(project, binName);
        var item = await findItemByPath(found.bin, path);
        var imported = false;
        if (!item) {
          await project.importFiles([path], true, ppro.ProjectItem.cast(found.bin), false);
          item = await findItemByPath(found.bin, path);
          imported = true;
        }
        if (!item) throw new HostError("import_failed", "Premiere could not import " + basename(path) + ".");
        return { bin: found.name, binCreated: found.created, item: item, imported: imported };
      }

      /** Clip spans [start, end] in seconds on a track. @param {AudioTrack} track */
      async function spans(track) {
        var items = track.getTrackItems(ppro.Constants.TrackItemType.CLIP, false);
        /** @type {number[][]} */
        var out = [];
        for (var i = 0; i < items.length; i++) {
          out.push([(await items[i].getStartTime()).seconds, (await items[i].getEndTime()).seconds]);
        }
        return out;
      }

      /** @param {Sequence} seq */
      async function frameRate(seq) {
        var ticks = parseFloat(await seq.getTimebase());
        return ticks > 0 ? Math.round((TICKS_PER_SECOND / ticks) * 1000) / 1000 : 30;
      }

      /** @param {Sequence} seq */
      async function describeSequence(seq) {
        var count = await seq.getAudioTrackCount();
        var tracks = [];
        for (var i = 0; i < count; i++) {
          var track = await seq.getAudioTrack(i);
          tracks.push({ index: i, name: Host.trackLabel(track.name, i), locked: null, clips: track.getTrackItems(ppro.Constants.TrackItemType.CLIP, false).length });
        }
        return {
          id: String(seq.guid),
          name: seq.name,
          playhead: (await seq.getPlayerPosition()).seconds,
          frameRate: await frameRate(seq),
          duration: (await seq.getEndTime()).seconds,
          audioTracks: tracks,
        };
      }

      /** The chosen track, or the first one with room for [start, end]; -1 when none. @param {Sequence} seq @param {any} chosen @param {number} start @param {number} end */
      async function chooseTrack(seq, chosen, start, end) {
        var count = await seq.getAudioTrackCount();
        if (chosen !== null && chosen !== undefined && chosen !== "auto") {
          var index = parseInt(chosen, 10);
          if (isNaN(index) || index < 0 || index >= count) {
            throw new HostError("track_not_found", "The sequence has no audio track A" + (isNaN(index) ? "?" : index + 1) + ".");
          }
          var track = await seq.getAudioTrack(index);
          if (Host.overlaps(await spans(track), start, end)) {
            throw new HostError("track_occupied", Host.trackLabel(track.name, index) + " already has a clip there. Choose another track or Auto.");
          }
          return index;
        }
        for (var i = 0; i < count; i++) {
          if (!Host.overlaps(await spans(await seq.getAudioTrack(i)), start, end)) return i;
        }
        return -1;
      }

      /** @param {AudioTrack} track @param {ProjectItem} item @param {string} path @param {number} at @param {number} tolerance */
      async function clipLanded(track, item, path, at, tolerance) {
        var items = track.getTrackItems(ppro.Constants.TrackItemType.CLIP, false);
        for (var i = 0; i < items.length; i++) {
          if (Math.abs((await items[i].getStartTime()).seconds - at) > tolerance) continue;
          var source = await items[i].getProjectItem();
          if (!source) continue;
          if (source.getId() === item.getId()) return true;
          var media = "";
          try {
            media = await ppro.ClipProjectItem.cast(source).getMediaFilePath();
          } catch (e) {
            media = "";
          }
          if (media && samePath(media) === samePath(path)) return true;
        }
        return false;
      }

      /** @template T @param {() => Promise<T>} fn @returns {Promise<T>} */
      function guarded(fn) {
        return fn().catch(function (error) {
          if (error instanceof HostError) throw error;
          throw new HostError("host_error", (error && error.message) || String(error));
        });
      }

      function theme() {
        var name = "dark";
        try {
          name = (doc && doc.theme && doc.theme.getCurrent()) || "dark";
        } catch (e) {
          name = "dark";
        }
        return { background: THEMES[name] || THEMES.dark, fontSize: 11, fontFamily: "", name: name };
      }

      return {
        info: function () {
          return { adapter: "uxp", host: "premierepro", hostVersion: (uxp.host && uxp.host.version) || "", lockedTracksKnown: false };
        },
        getContext: function () {
          return guarded(async function () {
            var project = await ppro.Project.getActiveProject();
            if (!project) return { project: null, sequence: null };
            var seq = await project.getActiveSequence();
            return { project: { name: project.name, path: project.path || "" }, sequence: seq ? await describeSequence(seq) : null };
          });
        },
        /** @param {string} path @param {{duration?: number, bin?: string, track?: any, time?: number}} [opts] */
        importAndPlace: function (path, opts) {
          var o = opts || {};
          return guarded(async function () {
            await requireFile(path);
            var project = await requireProject();
            var seq = await project.getActiveSequence();
            if (!seq) {
              var binOnly = await importIntoBin(project, path, o.bin);
              return {
                placed: false,
                reason: "no_sequence",
                message: 'No active sequence: "' + binOnly.item.name + '" was imported into the bin "' + binOnly.bin + '".',
                bin: binOnly.bin,
                item: binOnly.item.name,
              };
            }
            var duration = typeof o.duration === "number" && o.duration > 0 ? o.duration : 0;
            var at = typeof o.time === "number" && o.time >= 0 ? o.time : (await seq.getPlayerPosition()).seconds;
            // Choose before importing so a refusal leaves the project untouched.
            var index = await chooseTrack(seq, o.track === undefined ? "auto" : o.track, at, at + duration);
            if (index < 0) throw new HostError("no_free_track", MESSAGES.no_free_track);
            var done = await importIntoBin(project, path, o.bin);
            var editor = ppro.SequenceEditor.getEditor(seq);
            var time = ppro.TickTime.createWithSeconds(at);
            transact(project, "Place " + done.item.name, function () {
              return [editor.createOverwriteItemAction(done.item, time, 0, index)];
            });
            var track = await seq.getAudioTrack(index);
            var label = Host.trackLabel(track.name, index);
            if (!(await clipLanded(track, done.item, path, at, 1 / (await frameRate(seq))))) {
              throw new HostError("place_failed", "Premiere did not place the clip on " + label + ' (is the track locked?); it is in the bin "' + done.bin + '".');
            }
            return { placed: true, track: index, trackName: label, time: at, bin: done.bin, item: done.item.name, sequence: seq.name };
          });
        },
        /** @param {string} path @param {string} [bin] */
        importToBin: function (path, bin) {
          return guarded(async function () {
            await requireFile(path);
            var project = await requireProject();
            var done = await importIntoBin(project, path, bin);
            return { bin: done.bin, binCreated: done.binCreated, item: done.item.name, imported: done.imported };
          });
        },
        getMarkers: function () {
          return guarded(async function () {
            var project = await requireProject();
            var seq = await project.getActiveSequence();
            if (!seq) throw new HostError("no_sequence", MESSAGES.no_sequence_markers);
            var list = (await ppro.Markers.getMarkers(seq)).getMarkers();
            var markers = list.map(function (m) {
              var start = m.getStart().seconds;
              return { time: start, end: start + m.getDuration().seconds, name: m.getName() || "", comments: m.getComments() || "" };
            });
            markers.sort(function (a, b) {
              return a.time - b.time;
            });
            return { sequence: seq.name, markers: markers };
          });
        },
        /** @param {string} path */
        revealFile: function (path) {
          return guarded(async function () {
            await requireFile(path);
            var folder = dirname(path);
            if (!uxp.shell || typeof uxp.shell.openPath !== "function") throw new HostError("reveal_failed", "Premiere cannot open folders from this panel.");
            await uxp.shell.openPath(folder);
            return { folder: folder };
          });
        },
        /** No Web Audio in UXP: previews play in Premiere's Source Monitor. @param {string} path */
        preview: function (path) {
          return guarded(async function () {
            await requireFile(path);
            if (!(await ppro.SourceMonitor.openFilePath(path))) throw new HostError("preview_failed", "Premiere could not open " + basename(path) + " in the Source Monitor.");
            await ppro.SourceMonitor.play(1);
            return { opened: true };
          });
        },
        stopPreview: function () {
          return guarded(async function () {
            await ppro.SourceMonitor.play(0);
            return { stopped: true };
          });
        },
        /** @param {string} url */
        openURL: function (url) {
          if (uxp.shell && uxp.shell.openExternal) uxp.shell.openExternal(url);
        },
        getTheme: theme,
        /** @param {(theme: any) => void} callback */
        onThemeChange: function (callback) {
          var source = doc && doc.theme && doc.theme.onUpdated;
          if (!source) return function () {};
          function listener() {
            callback(theme());
          }
          source.addListener(listener);
          return function () {
            source.removeListener(listener);
          };
        },
      };
    }

    return { create: create, THEMES: THEMES };
  }
);
