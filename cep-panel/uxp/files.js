/*
 * UXP's file access in the shape core/files.js works with (Node's fs.promises, path, os): UXP's own
 * `fs` module takes native paths and returns promises when no callback is given.
 */
(function () {
  "use strict";
  var SFX = (window.SFX = window.SFX || {});

  function windows(p) {
    return /^([A-Za-z]:|\\\\)/.test(String(p));
  }

  var path = {
    join: function () {
      var parts = Array.prototype.slice.call(arguments).filter(Boolean);
      var sep = parts.length && windows(parts[0]) ? "\\" : "/";
      return parts.join(sep).replace(sep === "/" ? /\/+/g : /[\\\/]+/g, sep);
    },
    dirname: function (p) {
      var s = String(p);
      var i = windows(s) ? Math.max(s.lastIndexOf("\\"), s.lastIndexOf("/")) : s.lastIndexOf("/");
      return i > 0 ? s.slice(0, i) : s.charAt(0) === "/" ? "/" : s;
    },
    basename: function (p) {
      var s = String(p);
      return s.split(windows(s) ? /[\\\/]/ : "/").pop();
    },
    isAbsolute: function (p) {
      return String(p).charAt(0) === "/" || windows(p);
    },
  };

  /** @param {any} fs UXP's require("fs") @param {any} os UXP's require("os") */
  function node(fs, os) {
    function stat(p) {
      return Promise.resolve(fs.lstat(p)).then(function (s) {
        return { size: s.size, isFile: function () { return s.isFile(); }, isDirectory: function () { return s.isDirectory(); } };
      });
    }
    return {
      path: path,
      os: { homedir: function () { return os.homedir(); } },
      fs: {
        promises: {
          mkdir: function (p, options) {
            return Promise.resolve(fs.mkdir(p, { recursive: !!(options && options.recursive) })).then(null, function (error) {
              // An existing folder is fine for a recursive mkdir, whatever error text UXP gives.
              return stat(p).then(function (s) {
                if (!s.isDirectory()) throw error;
              });
            });
          },
          writeFile: function (p, data, options) {
            var flag = (options && options.flag) || "w";
            return Promise.resolve(fs.writeFile(p, data, { flag: flag })).then(null, function (error) {
              if (flag !== "wx") throw error;
              // UXP's error codes are not Node's: report an existing file the way Node does.
              return stat(p).then(
                function () {
                  var e = new Error("EEXIST: " + p);
                  /** @type {any} */ (e).code = "EEXIST";
                  throw e;
                },
                function () {
                  throw error;
                }
              );
            });
          },
          readFile: function (p) {
            return Promise.resolve(fs.readFile(p)).then(function (buffer) {
              return new Uint8Array(buffer);
            });
          },
          stat: stat,
          rename: function (a, b) {
            return Promise.resolve(fs.rename(a, b));
          },
        },
      },
    };
  }

  SFX.UxpFiles = { node: node, path: path };
})();
