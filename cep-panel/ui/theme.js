/*
 * Follows Premiere's theme: a palette derived from the panel background colour and font size that
 * appSkinInfo reports (darkest, dark, light or lightest brightness), applied as CSS variables.
 */
(function (factory) {
  var api = factory();
  if (typeof window !== "undefined" && window.document) {
    (window.SFX = window.SFX || {}).Theme = api;
  } else {
    module.exports = api;
  }
})(function () {
  "use strict";

  function clamp(v) {
    return Math.max(0, Math.min(255, Math.round(v)));
  }
  function rgb(c) {
    return "rgb(" + clamp(c.red) + ", " + clamp(c.green) + ", " + clamp(c.blue) + ")";
  }
  /** Moves a colour towards white (amount > 0) or black (amount < 0). */
  function shade(c, amount) {
    var target = amount > 0 ? 255 : 0;
    var a = Math.abs(amount);
    return { red: c.red + (target - c.red) * a, green: c.green + (target - c.green) * a, blue: c.blue + (target - c.blue) * a };
  }
  function parse(css) {
    var m = /rgb\((\d+), (\d+), (\d+)\)/.exec(css);
    return { red: +m[1], green: +m[2], blue: +m[3] };
  }
  function luminance(c) {
    function ch(v) {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    }
    return 0.2126 * ch(c.red) + 0.7152 * ch(c.green) + 0.0722 * ch(c.blue);
  }
  /** WCAG contrast ratio of two "rgb(r, g, b)" colours. */
  function contrast(a, b) {
    var la = luminance(parse(a));
    var lb = luminance(parse(b));
    return (Math.max(la, lb) + 0.05) / (Math.min(la, lb) + 0.05);
  }

  /** @param {{background: {red, green, blue}, fontSize: number, fontFamily?: string}} theme */
  function palette(theme) {
    var bg = theme.background;
    var dark = luminance(bg) < 0.25;
    var vars = dark
      ? {
          "--bg": rgb(bg),
          "--bg-field": rgb(shade(bg, -0.28)),
          "--bg-raised": rgb(shade(bg, 0.06)),
          "--bg-hover": rgb(shade(bg, 0.12)),
          "--border": rgb(shade(bg, 0.16)),
          "--border-strong": rgb(shade(bg, 0.3)),
          "--text": "rgb(222, 222, 222)",
          "--text-dim": "rgb(154, 154, 154)",
          "--accent": "rgb(55, 142, 240)",
          "--accent-hover": "rgb(84, 160, 245)",
          "--accent-text": "rgb(255, 255, 255)",
          "--danger": "rgb(236, 91, 98)",
          "--warning": "rgb(230, 167, 60)",
          "--ok": "rgb(45, 180, 125)",
          "--wave": "rgb(110, 168, 235)",
          "--wave-played": "rgb(190, 220, 255)",
        }
      : {
          "--bg": rgb(bg),
          "--bg-field": rgb(shade(bg, 0.7)),
          "--bg-raised": rgb(shade(bg, 0.35)),
          "--bg-hover": rgb(shade(bg, -0.06)),
          "--border": rgb(shade(bg, -0.14)),
          "--border-strong": rgb(shade(bg, -0.3)),
          "--text": "rgb(29, 29, 29)",
          "--text-dim": "rgb(96, 96, 96)",
          "--accent": "rgb(20, 115, 230)",
          "--accent-hover": "rgb(13, 102, 208)",
          "--accent-text": "rgb(255, 255, 255)",
          "--danger": "rgb(201, 37, 45)",
          "--warning": "rgb(160, 100, 0)",
          "--ok": "rgb(18, 128, 82)",
          "--wave": "rgb(38, 128, 235)",
          "--wave-played": "rgb(10, 70, 150)",
        };
    vars["--font-size"] = (theme.fontSize || 11) + "px";
    if (theme.fontFamily) vars["--font-family"] = '"' + theme.fontFamily + '", system-ui, sans-serif';
    return { scheme: dark ? "dark" : "light", vars: vars };
  }

  function apply(theme, root) {
    var p = palette(theme);
    var el = root || document.documentElement;
    for (var name in p.vars) el.style.setProperty(name, p.vars[name]);
    el.setAttribute("data-theme", p.scheme);
    return p;
  }

  return { palette: palette, apply: apply, contrast: contrast };
});
