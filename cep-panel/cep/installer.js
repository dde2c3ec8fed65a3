/*
 * The CEP host's update installer: everything that touches the editor's disk and processes.
 * Used by core/updates.js through `download`, `install`, `discard`; `applyPending` runs at panel start.
 *
 * Install order (see the updates reference note):
 * 1. Adobe's Unified Plugin Installer Agent (UPIA), when Creative Cloud desktop installed it. Run
 *    with execFile and an argument array (no shell); only its "Installation Successful" line counts
 *    as success, anything else is a failure and the installed version stays.
 * 2. Without UPIA: the ZXP (a zip) is unpacked into a staging folder next to the per-user extensions
 *    folder (same disk, so the swap is a rename; outside it, so CEP never loads two copies), checked,
 *    and swapped in at the next panel start; the previous version is kept for rollback.
 * Premiere must be restarted to load the new version either way.
 */
"use strict";

var fs = require("fs");
var os = require("os");
var path = require("path");
var crypto = require("crypto");
var zlib = require("zlib");
var childProcess = require("child_process");

var SUCCESS_LINE = "Installation Successful";
var BUNDLE_ID = "com.sfxstudio.panel";
var UPIA_MAC =
  "/Library/Application Support/Adobe/Adobe Desktop Common/RemoteComponents/UPI/UnifiedPluginInstallerAgent/" +
  "UnifiedPluginInstallerAgent.app/Contents/MacOS/UnifiedPluginInstallerAgent";
var UPIA_WIN_TAIL = ["Adobe", "Adobe Desktop Common", "RemoteComponents", "UPI", "UnifiedPluginInstallerAgent", "UnifiedPluginInstallerAgent.exe"];

function InstallError(code, message) {
  this.name = "UpdateError";
  this.code = code;
  this.message = message;
}
InstallError.prototype = Object.create(Error.prototype);
InstallError.prototype.constructor = InstallError;

/** The per-user CEP extensions folder of this OS. */
function defaultExtensionsDir(platform, env, home) {
  if (platform === "win32") return path.win32.join(env.APPDATA || path.win32.join(home, "AppData", "Roaming"), "Adobe", "CEP", "extensions");
  return path.posix.join(home, "Library", "Application Support", "Adobe", "CEP", "extensions");
}

/** Where UPIA may be, in the order to try. */
function upiaCandidates(platform, env) {
  if (platform === "darwin") return [UPIA_MAC];
  if (platform === "win32") {
    return [env.CommonProgramFiles, env["CommonProgramFiles(x86)"]]
      .filter(Boolean)
      .map(function (root) {
        return path.win32.join.apply(path.win32, [root].concat(UPIA_WIN_TAIL));
      });
  }
  return [];
}

// --- zip reading (a ZXP is a zip; only stored and deflated entries, no zip64) --------------------------

function readZip(buffer) {
  var eocd = -1;
  for (var i = buffer.length - 22; i >= Math.max(0, buffer.length - 65557); i--) {
    if (buffer.readUInt32LE(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new InstallError("bad_package", "The package is not a zip file");
  var count = buffer.readUInt16LE(eocd + 10);
  var offset = buffer.readUInt32LE(eocd + 16);
  var entries = [];
  for (var n = 0; n < count; n++) {
    if (offset + 46 > buffer.length || buffer.readUInt32LE(offset) !== 0x02014b50) throw new InstallError("bad_package", "The zip directory is damaged");
    var nameLength = buffer.readUInt16LE(offset + 28);
    var extraLength = buffer.readUInt16LE(offset + 30);
    var commentLength = buffer.readUInt16LE(offset + 32);
    entries.push({
      name: buffer.toString("utf8", offset + 46, offset + 46 + nameLength),
      method: buffer.readUInt16LE(offset + 10),
      compressedSize: buffer.readUInt32LE(offset + 20),
      size: buffer.readUInt32LE(offset + 24),
      localOffset: buffer.readUInt32LE(offset + 42),
    });
    offset += 46 + nameLength + extraLength + commentLength;
  }
  return entries;
}

function entryData(buffer, entry) {
  var at = entry.localOffset;
  if (buffer.readUInt32LE(at) !== 0x04034b50) throw new InstallError("bad_package", "A zip entry is damaged: " + entry.name);
  var start = at + 30 + buffer.readUInt16LE(at + 26) + buffer.readUInt16LE(at + 28);
  var raw = buffer.subarray(start, start + entry.compressedSize);
  var data;
  if (entry.method === 0) data = raw;
  else if (entry.method === 8) data = zlib.inflateRawSync(raw);
  else throw new InstallError("bad_package", "Unsupported compression in " + entry.name);
  if (data.length !== entry.size) throw new InstallError("bad_package", "A zip entry has the wrong size: " + entry.name);
  return data;
}

/** A relative path inside the package, or null when the name would escape the target folder. */
function safeRelative(name) {
  var parts = name.replace(/\\/g, "/").split("/");
  if (name.charAt(0) === "/" || /^[A-Za-z]:/.test(name)) return null;
  for (var i = 0; i < parts.length; i++) if (parts[i] === "..") return null;
  return parts.filter(Boolean).join("/");
}

function unzipTo(file, target) {
  var buffer = fs.readFileSync(file);
  var entries = readZip(buffer);
  fs.mkdirSync(target, { recursive: true });
  entries.forEach(function (entry) {
    var rel = safeRelative(entry.name);
    if (rel === null) throw new InstallError("bad_package", "The package holds a path outside its folder: " + entry.name);
    if (!rel || /\/$/.test(entry.name)) return; // a directory entry
    var dest = path.join(target, rel);
    fs.mkdirSync(path.dirname(dest), { recursive: true });
    fs.writeFileSync(dest, entryData(buffer, entry));
  });
}

function manifestOf(folder) {
  var xml;
  try {
    xml = fs.readFileSync(path.join(folder, "CSXS", "manifest.xml"), "utf8");
  } catch (e) {
    return null;
  }
  var id = /ExtensionBundleId="([^"]*)"/.exec(xml);
  var version = /ExtensionBundleVersion="([^"]*)"/.exec(xml);
  return { bundleId: id ? id[1] : "", version: version ? version[1] : "" };
}

function removeTree(target) {
  (fs.rmSync || fs.rmdirSync)(target, { recursive: true, force: true });
}

function exists(target) {
  try {
    fs.lstatSync(target);
    return true;
  } catch (e) {
    return false;
  }
}

// --- the installer ----------------------------------------------------------------------------------------

/**
 * @param {{platform?: string, env?: object, home?: string, extensionsDir?: string, tmpDir?: string,
 *          bundleId?: string, upiaPaths?: string[], upiaTimeoutMs?: number}} [options]
 */
function createInstaller(options) {
  options = options || {};
  var platform = options.platform || process.platform;
  var env = options.env || process.env;
  var extensionsDir = options.extensionsDir || defaultExtensionsDir(platform, env, options.home || os.homedir());
  var bundleId = options.bundleId || BUNDLE_ID;
  var tmpDir = options.tmpDir || os.tmpdir();
  // Beside the extensions folder, on the same disk: a rename moves a whole version at once.
  var updatesDir = path.join(path.dirname(extensionsDir), "sfx-studio-updates");
  var pendingFile = path.join(updatesDir, "pending.json");
  var current = path.join(extensionsDir, bundleId);
  var previous = path.join(updatesDir, "previous");

  function findUpia() {
    var candidates = options.upiaPaths || upiaCandidates(platform, env);
    for (var i = 0; i < candidates.length; i++) {
      try {
        if (fs.statSync(candidates[i]).isFile()) return candidates[i];
      } catch (e) {
        /* not there */
      }
    }
    return null;
  }

  /** Stream `url` to a temporary file; never more than maxBytes, the SHA-256 computed on the way. */
  function download(url, opts) {
    var maxBytes = opts.maxBytes;
    var onProgress = opts.onProgress || function () {};
    var file = path.join(tmpDir, "sfx-update-" + crypto.randomBytes(8).toString("hex") + ".part");
    return new Promise(function (resolve, reject) {
      var hash = crypto.createHash("sha256");
      var received = 0;
      var settled = false;
      var out = fs.createWriteStream(file, { flags: "wx" });
      function fail(error, request) {
        if (settled) return;
        settled = true;
        if (request) request.destroy();
        out.destroy();
        fs.unlink(file, function () {
          reject(error);
        });
      }
      function get(target, redirects) {
        var client = /^https:/i.test(target) ? require("https") : require("http");
        var request = client.get(target, function (resp) {
          if (resp.statusCode >= 300 && resp.statusCode < 400 && resp.headers.location && redirects < 5) {
            resp.resume();
            return get(new URL(resp.headers.location, target).toString(), redirects + 1);
          }
          if (resp.statusCode !== 200) {
            resp.resume();
            return fail(new InstallError("download_failed", "The download answered " + resp.statusCode), request);
          }
          var declared = Number(resp.headers["content-length"]);
          if (declared > maxBytes) return fail(new InstallError("size_mismatch", "The download is larger than the manifest says"), request);
          resp.on("data", function (chunk) {
            received += chunk.length;
            if (received > maxBytes) return fail(new InstallError("size_mismatch", "The download is larger than the manifest says"), request);
            hash.update(chunk);
            out.write(chunk);
            onProgress(received, maxBytes);
          });
          resp.on("end", function () {
            if (settled) return;
            out.end(function () {
              if (settled) return;
              settled = true;
              resolve({ path: file, size: received, sha256: hash.digest("hex") });
            });
          });
          resp.on("error", function (error) {
            fail(new InstallError("download_failed", String(error.message || error)), request);
          });
        });
        request.on("error", function (error) {
          fail(new InstallError("download_failed", String(error.message || error)), request);
        });
      }
      out.on("error", function (error) {
        fail(new InstallError("download_failed", String(error.message || error)));
      });
      get(url, 0);
    });
  }

  function discard(file) {
    return new Promise(function (resolve) {
      fs.unlink(file, function () {
        resolve();
      });
    });
  }

  function runUpia(exe, file) {
    var args = [platform === "win32" ? "/install" : "--install", file];
    return new Promise(function (resolve, reject) {
      childProcess.execFile(exe, args, { timeout: options.upiaTimeoutMs || 5 * 60 * 1000, windowsHide: true }, function (error, stdout, stderr) {
        var output = String(stdout || "") + String(stderr || "");
        if (output.indexOf(SUCCESS_LINE) >= 0) {
          resolve({ method: "upia", restartRequired: true });
        } else {
          var detail = output.trim().split(/\r?\n/).slice(-3).join(" ") || (error && error.message) || "no output";
          reject(new InstallError("upia_failed", "Adobe's installer did not install the update: " + detail));
        }
      });
    });
  }

  /** Unpack into the staging folder, check it is our extension at the offered version, mark it pending. */
  function stage(file, offer) {
    var staged = path.join(updatesDir, "staged-" + offer.version.replace(/[^0-9A-Za-z.-]/g, "_"));
    fs.mkdirSync(updatesDir, { recursive: true });
    removeTree(staged);
    try {
      unzipTo(file, staged);
      var found = manifestOf(staged);
      if (!found || found.bundleId !== bundleId || found.version !== offer.version) {
        throw new InstallError("bad_package", "The package is not " + bundleId + " " + offer.version);
      }
    } catch (error) {
      removeTree(staged);
      throw error;
    }
    fs.writeFileSync(pendingFile, JSON.stringify({ version: offer.version, staged: staged }));
    return { method: "staged", restartRequired: true, staged: staged };
  }

  function install(file, offer) {
    var upia = findUpia();
    if (upia) return runUpia(upia, file);
    return new Promise(function (resolve) {
      resolve(stage(file, offer));
    });
  }

  /**
   * At panel start: swap a staged version in (current -> previous, staged -> current). A folder that
   * is a link is a developer's checkout and is left alone. Returns what happened.
   */
  function applyPending() {
    var pending;
    try {
      pending = JSON.parse(fs.readFileSync(pendingFile, "utf8"));
    } catch (e) {
      return { swapped: false, reason: "nothing_pending" };
    }
    if (!pending.staged || !exists(pending.staged)) {
      fs.unlinkSync(pendingFile);
      return { swapped: false, reason: "staging_missing" };
    }
    if (exists(current) && fs.lstatSync(current).isSymbolicLink()) return { swapped: false, reason: "dev_link" };
    removeTree(previous);
    var moved = false;
    try {
      if (exists(current)) {
        fs.renameSync(current, previous);
        moved = true;
      }
      fs.renameSync(pending.staged, current);
    } catch (error) {
      if (moved && !exists(current)) fs.renameSync(previous, current);
      return { swapped: false, reason: "swap_failed", message: String(error.message || error) };
    }
    fs.unlinkSync(pendingFile);
    return { swapped: true, version: pending.version };
  }

  /** Put the previous version back (after an update that does not start). */
  function rollback() {
    if (!exists(previous)) return { rolledBack: false };
    var failed = path.join(updatesDir, "failed");
    removeTree(failed);
    if (exists(current)) fs.renameSync(current, failed);
    fs.renameSync(previous, current);
    return { rolledBack: true, version: (manifestOf(current) || {}).version };
  }

  return {
    download: download,
    discard: discard,
    install: install,
    applyPending: applyPending,
    rollback: rollback,
    findUpia: findUpia,
    extensionsDir: extensionsDir,
    updatesDir: updatesDir,
  };
}

module.exports = {
  createInstaller: createInstaller,
  upiaCandidates: upiaCandidates,
  defaultExtensionsDir: defaultExtensionsDir,
  readZip: readZip,
  safeRelative: safeRelative,
  SUCCESS_LINE: SUCCESS_LINE,
};
