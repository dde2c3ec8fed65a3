/* Tiny DOM helpers shared by the views. */
(function () {
  "use strict";
  var SFX = (window.SFX = window.SFX || {});
  SFX.Dom = {
    $: function (id) {
      return document.getElementById(id);
    },
    on: function (el, type, fn) {
      el.addEventListener(type, fn);
    },
    show: function (el, visible) {
      el.hidden = !visible;
    },
    /** Disables a button while a promise runs. */
    withButton: function (button, promise) {
      if (button) button.disabled = true;
      return promise.then(
        function (v) {
          if (button) button.disabled = false;
          return v;
        },
        function (e) {
          if (button) button.disabled = false;
          throw e;
        }
      );
    },
  };
  SFX.Views = SFX.Views || {};
})();
