/*
 * UXP's preview player. UXP has neither Web Audio nor <audio>: a file plays in Premiere's Source
 * Monitor through the host adapter, and the waveform's playhead follows the clock over the WAV's own
 * duration. A voice preview (a URL) is downloaded to the plugin's temporary folder first.
 */
(function () {
  "use strict";
  var SFX = (window.SFX = window.SFX || {});

  function create(host, uxp) {
    var current = null;

    function handleFor(path, duration) {
      return host.preview(path).then(function () {
        var started = Date.now();
        var timer = 0;
        var handle = {
          onended: null,
          stop: function () {
            clearTimeout(timer);
            if (current === handle) current = null;
            host.stopPreview().catch(function () {});
          },
          progress: function () {
            return duration ? Math.min(1, (Date.now() - started) / (duration * 1000)) : null;
          },
        };
        if (current) current.stop();
        current = handle;
        if (duration) {
          timer = setTimeout(function () {
            if (current === handle) current = null;
            if (handle.onended) handle.onended();
          }, duration * 1000);
        }
        return handle;
      });
    }

    return {
      playFile: function (path, bytes) {
        var duration = 0;
        try {
          duration = bytes ? SFX.Wav.decode(bytes).duration : 0;
        } catch (e) {
          duration = 0;
        }
        return handleFor(path, duration);
      },
      playUrl: function (url) {
        return fetch(url)
          .then(function (response) {
            if (!response.ok) throw new Error("preview download failed (" + response.status + ")");
            return response.arrayBuffer();
          })
          .then(function (bytes) {
            return uxp.storage.localFileSystem.getTemporaryFolder().then(function (folder) {
              var name = "voice-preview-" + Date.now() + (/\.wav(\?|$)/i.test(url) ? ".wav" : ".mp3");
              return folder.createFile(name, { overwrite: true }).then(function (file) {
                return file.write(bytes, { format: uxp.storage.formats.binary }).then(function () {
                  return handleFor(file.nativePath, 0);
                });
              });
            });
          });
      },
    };
  }

  SFX.UxpPlayer = { create: create };
})();
