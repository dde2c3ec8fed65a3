/*
 * The panel's icons as inline SVG paths. Each icon is its own <svg> (no sprite and <use>), which both
 * CEP's Chromium and UXP's renderer draw.
 */
(function (factory) {
  var api = factory();
  if (typeof window !== "undefined" && window.document) {
    (window.SFX = window.SFX || {}).Icons = api;
  } else {
    module.exports = api;
  }
})(function () {
  "use strict";

  var PATHS = {
    play: "M4.5 2.8v10.4c0 .5.5.8.9.5l8-5.2a.6.6 0 0 0 0-1L5.4 2.3c-.4-.3-.9 0-.9.5z",
    stop: "M3.5 3.5h9v9h-9z",
    gear: "M9.4 1.5l.3 1.7c.4.2.8.4 1.1.7l1.6-.6 1.4 2.4-1.3 1.1a4.6 4.6 0 0 1 0 1.4l1.3 1.1-1.4 2.4-1.6-.6c-.3.3-.7.5-1.1.7l-.3 1.7H6.6l-.3-1.7c-.4-.2-.8-.4-1.1-.7l-1.6.6-1.4-2.4 1.3-1.1a4.6 4.6 0 0 1 0-1.4L2.2 5.7l1.4-2.4 1.6.6c.3-.3.7-.5 1.1-.7l.3-1.7h2.8zM8 5.8a2.2 2.2 0 1 0 0 4.4 2.2 2.2 0 0 0 0-4.4z",
    folder: "M1.5 3.5c0-.6.4-1 1-1h3.6l1.5 1.5h5.9c.6 0 1 .4 1 1v7.5c0 .6-.4 1-1 1h-11c-.6 0-1-.4-1-1v-9z",
    bin: "M1.5 9.2 3.3 3c.1-.3.4-.5.7-.5h8c.3 0 .6.2.7.5l1.8 6.2v4.3c0 .6-.4 1-1 1h-11c-.6 0-1-.4-1-1V9.2zm1.7-.2h2.9l.8 1.6h2.2l.8-1.6h2.9L11.5 4h-7L3.2 9z",
    again: "M8 2.5a5.5 5.5 0 0 1 5.1 3.4l.9-.9V9H10l1.6-1.6A4 4 0 1 0 12 9.5h1.5A5.5 5.5 0 1 1 8 2.5z",
    trash: "M6 1.5h4l.5 1H14V4H2V2.5h3.5l.5-1zM3 5h10l-.7 8.6c0 .5-.5.9-1 .9H4.7c-.5 0-1-.4-1-.9L3 5z",
    insert: "M7.3 1.5h1.4v7.2l2.4-2.4 1 1L8 11.4 3.9 7.3l1-1 2.4 2.4V1.5zM1.5 12.5h13V14h-13z",
    grip: "M5 3h2v2H5zM9 3h2v2H9zM5 7h2v2H5zM9 7h2v2H9zM5 11h2v2H5zM9 11h2v2H9z",
    close: "M4.1 3l3.9 3.9L11.9 3 13 4.1 9.1 8l3.9 3.9-1.1 1.1L8 9.1 4.1 13 3 11.9 6.9 8 3 4.1z",
    wave: "M2 7h1.4v2H2zM4.4 5h1.4v6H4.4zM6.8 2.5h1.4v11H6.8zM9.2 4.5h1.4v7H9.2zM11.6 6h1.4v4h-1.4z",
    voice: "M8 1.5a2.5 2.5 0 0 1 2.5 2.5v4a2.5 2.5 0 0 1-5 0V4A2.5 2.5 0 0 1 8 1.5zM3.5 7.5H5a3 3 0 0 0 6 0h1.5a4.5 4.5 0 0 1-3.8 4.4V14h-1.4v-2.1a4.5 4.5 0 0 1-3.8-4.4z",
  };

  function svg(name, cls) {
    return '<svg viewBox="0 0 16 16" aria-hidden="true" data-icon="' + name + '"' + (cls ? ' class="' + cls + '"' : "") + '><path d="' + PATHS[name] + '"/></svg>';
  }

  /** Swaps the icon inside el (a button) for another one. */
  function set(el, name) {
    var old = el.querySelector("svg[data-icon]");
    if (old) {
      if (old.getAttribute("data-icon") === name) return;
      old.setAttribute("data-icon", name);
      old.firstChild.setAttribute("d", PATHS[name]);
    }
  }

  return { svg: svg, set: set, PATHS: PATHS };
});
