/*
 * Where generated audio lands on disk: an output folder (beside the saved project, else
 * the user's Documents/AI SFX, or the user's choice), readable unique names, never overwriting a file.
 * Works over Node's fs/path/os shape: Node itself in CEP (--enable-nodejs), UXP's fs wrapped to the
 * same shape in uxp/files.js. Everything is async so the panel never blocks Premiere's UI.
 */
(function (factory) {
  var api = factory();
  if (typeof window !== "undefined" && window.document) {
    (window.SFX = window.SFX || {}).Files = api;
  } else {
    module.exports = api;
  }
})(function () {
  "use strict";

  var FOLDER_NAME = "AI SFX";
  var MAX_BASE = 80;
  var MAX_ATTEMPTS = 1000;

  /** Node's require inside CEP (mixed context or cep_node), or null in a plain browser. */
  function nodeRequire() {
    if (typeof window === "undefined") return typeof require === "function" ? require : null;
    if (window.cep_node && typeof window.cep_node.require === "function") return window.cep_node.require;
    if (typeof window.require === "function") return window.require;
    return null;
  }

  /** A file name safe on macOS and Windows: no separators, reserved or control characters. */
  function safeName(name, fallbackExt) {
    var ext = "";
    var base = String(name || "");
    var dot = base.lastIndexOf(".");
    if (dot > 0 && /^\.[A-Za-z0-9]{1,5}$/.test(base.slice(dot))) {
      ext = base.slice(dot).toLowerCase();
      base = base.slice(0, dot);
    }
    base = base
      .replace(/[\u0000-\u001f\u007f<>:"\/\\|?*]+/g, " ")
      .replace(/\s+/g, " ")
      .replace(/^[\s.]+|[\s.]+$/g, "");
    if (/^(con|prn|aux|nul|com\d|lpt\d)$/i.test(base)) base = "_" + base;
    if (base.length > MAX_BASE) base = base.slice(0, MAX_BASE).replace(/[\s.-]+$/, "");
    if (!base) base = "sound";
    return base + (ext || "." + (fallbackExt || "wav"));
  }

  /** A readable name from a prompt, when the server gave none: "heavy-wooden-door-slams.wav". */
  function nameFromPrompt(prompt, ext) {
    var words = String(prompt || "")
      .toLowerCase()
      .replace(/[^a-z0-9\u00c0-\u024f]+/g, " ")
      .split(" ")
      .filter(Boolean)
      .slice(0, 6);
    return safeName((words.join("-") || "sound") + "." + (ext || "wav"));
  }

  /**
   * @param {{fs: any, path: any, os: any}} node Node's modules (or the same shape)
   * @param {{documents?: string}} [options] the user's Documents folder as the host reports it (CEP's
   *   system path follows a redirected or OneDrive Documents folder on Windows; ~/Documents does not)
   */
  function FileStore(node, options) {
    this.fs = node.fs;
    this.path = node.path;
    this.os = node.os;
    this.documents = (options && options.documents) || "";
  }

  /** The folder new files go to: the configured one, else beside the saved project, else Documents. */
  FileStore.prototype.folderFor = function (configured, projectPath) {
    if (configured && String(configured).trim()) return String(configured).trim();
    // An unsaved project has no folder of its own (its path is empty or bare): fall back to Documents.
    if (projectPath && /\.prproj$/i.test(projectPath) && this.path.isAbsolute(projectPath)) {
      return this.path.join(this.path.dirname(projectPath), FOLDER_NAME);
    }
    return this.path.join(this.documents || this.path.join(this.os.homedir(), "Documents"), FOLDER_NAME);
  };

  /**
   * Writes bytes under a unique name in folder and returns the full path. The exclusive "wx" flag makes
   * the no-overwrite rule hold even if two writes race: an existing name gets " 2", " 3", ...
   */
  FileStore.prototype.writeUnique = function (folder, name, bytes) {
    var self = this;
    var clean = safeName(name);
    var dot = clean.lastIndexOf(".");
    var base = clean.slice(0, dot);
    var ext = clean.slice(dot);
    var data = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
    return self.fs.promises.mkdir(folder, { recursive: true }).then(function () {
      function attempt(n) {
        var candidate = self.path.join(folder, n === 1 ? clean : base + " " + n + ext);
        return self.fs.promises.writeFile(candidate, data, { flag: "wx" }).then(
          function () {
            return candidate;
          },
          function (error) {
            if (error && error.code === "EEXIST" && n < MAX_ATTEMPTS) return attempt(n + 1);
            throw error;
          }
        );
      }
      return attempt(1);
    });
  };

  FileStore.prototype.exists = function (file) {
    if (!file) return Promise.resolve(false);
    return this.fs.promises.stat(file).then(
      function (stat) {
        return stat.isFile() && stat.size > 0;
      },
      function () {
        return false;
      }
    );
  };

  FileStore.prototype.read = function (file) {
    return this.fs.promises.readFile(file).then(function (buffer) {
      return buffer.buffer.slice(buffer.byteOffset, buffer.byteOffset + buffer.byteLength);
    });
  };

  /** A FileStore over Node's modules, or null when the panel runs without Node (plain browser). */
  function fromNode(options) {
    var req = nodeRequire();
    if (!req) return null;
    try {
      return new FileStore({ fs: req("fs"), path: req("path"), os: req("os") }, options);
    } catch (e) {
      return null;
    }
  }

  function hostname() {
    var req = nodeRequire();
    try {
      return req ? String(req("os").hostname()).replace(/\.local$/i, "") : "";
    } catch (e) {
      return "";
    }
  }

  return { FileStore: FileStore, fromNode: fromNode, nodeRequire: nodeRequire, hostname: hostname, safeName: safeName, nameFromPrompt: nameFromPrompt, FOLDER_NAME: FOLDER_NAME };
});
