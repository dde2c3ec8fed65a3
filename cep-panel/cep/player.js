/*
 * CEP's preview player: CEP's Chromium plays audio itself, from the bytes in memory or a URL.
 * Handles follow the contract waveform.js and the voice preview use: {stop, progress, onended}.
 */
(function () {
  "use strict";
  var SFX = (window.SFX = window.SFX || {});

  function handleFor(audio, cleanup) {
    var handle = {
      onended: null,
      stop: function () {
        audio.pause();
        if (cleanup) cleanup();
      },
      progress: function () {
        return audio.duration ? audio.currentTime / audio.duration : 0;
      },
    };
    audio.onended = audio.onerror = function () {
      if (cleanup) cleanup();
      if (handle.onended) handle.onended();
    };
    return audio.play().then(function () {
      return handle;
    });
  }

  SFX.CepPlayer = {
    playFile: function (path, bytes) {
      var url = URL.createObjectURL(new Blob([bytes], { type: "audio/wav" }));
      return handleFor(new Audio(url), function () {
        URL.revokeObjectURL(url);
      });
    },
    playUrl: function (url) {
      return handleFor(new Audio(url), null);
    },
  };
})();
