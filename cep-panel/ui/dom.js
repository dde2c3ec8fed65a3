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
    /**
     * Options are made and removed as plain elements (no Option constructor or select.length
     * truncation), which both CEP's Chromium and UXP's renderer support.
     */
    addOption: function (select, text, value) {
      var option = document.createElement("option");
      option.textContent = text;
      option.value = value;
      select.appendChild(option);
      return option;
    },
    /** Removes every option after the first `keep`. */
    trimOptions: function (select, keep) {
      while (select.options.length > keep) select.removeChild(select.options[select.options.length - 1]);
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
