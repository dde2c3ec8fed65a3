/*
 * The slice of Adobe's CSInterface API this panel uses, written over CEP's native bridge
 * (window.__adobe_cep__) so the extension ships no third-party code. Same method names and
 * behaviour as CSInterface 11 for: evalScript, getHostEnvironment/hostEnvironment, getSystemPath,
 * addEventListener/removeEventListener, openURLInDefaultBrowser, getExtensionID, registerKeyEventsInterest.
 */
(function () {
  "use strict";
  var bridge = window.__adobe_cep__;

  function CSInterface() {
    this.hostEnvironment = bridge ? JSON.parse(bridge.getHostEnvironment()) : null;
  }
  CSInterface.THEME_COLOR_CHANGED_EVENT = "com.adobe.csxs.events.ThemeColorChanged";

  CSInterface.prototype.getHostEnvironment = function () {
    this.hostEnvironment = JSON.parse(bridge.getHostEnvironment());
    return this.hostEnvironment;
  };
  /** The callback receives ExtendScript's result string ("EvalScript error." on an uncaught error). */
  CSInterface.prototype.evalScript = function (script, callback) {
    bridge.evalScript(script, callback || function () {});
  };
  /** @param {string} pathType e.g. "extension", "userData", "myDocuments" */
  CSInterface.prototype.getSystemPath = function (pathType) {
    var path = decodeURI(bridge.getSystemPath(pathType));
    return navigator.platform.indexOf("Win") === 0 ? path.replace("file:///", "") : path.replace("file://", "");
  };
  CSInterface.prototype.addEventListener = function (type, listener, obj) {
    bridge.addEventListener(type, listener, obj);
  };
  CSInterface.prototype.removeEventListener = function (type, listener, obj) {
    bridge.removeEventListener(type, listener, obj);
  };
  CSInterface.prototype.openURLInDefaultBrowser = function (url) {
    return window.cep && window.cep.util ? window.cep.util.openURLInDefaultBrowser(url) : window.open(url, "_blank");
  };
  /** @param {string} keyEventsInterest JSON list of {keyCode, ctrlKey?, metaKey?, ...} the panel wants */
  CSInterface.prototype.registerKeyEventsInterest = function (keyEventsInterest) {
    return bridge.registerKeyEventsInterest(keyEventsInterest);
  };
  CSInterface.prototype.getExtensionID = function () {
    return bridge.getExtensionId();
  };

  window.CSInterface = CSInterface;
})();
