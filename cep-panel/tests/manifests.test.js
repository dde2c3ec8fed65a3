// Both builds' manifests: the CEP one against Adobe's ExtensionManifest 7.0 schema (libxml2 compiled
// to WebAssembly, npm xmllint-wasm), the UXP one against what Premiere 25.6+ needs and what the build
// script rewrites. Plus CSS that CEP 11's Chromium 88 would silently ignore.
"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const path = require("node:path");
const { validateXML } = require("xmllint-wasm");

const root = path.join(__dirname, "..");
const read = (p) => fs.readFileSync(path.join(root, p), "utf8");
const schema = read("tests/fixtures/ExtensionManifest_v_7_0.xsd");

function validate(xml) {
  return validateXML({ xml: [{ fileName: "manifest.xml", contents: xml }], schema: [schema] });
}

test("CSXS/manifest.xml is valid against Adobe's ExtensionManifest 7.0 schema", async () => {
  const result = await validate(read("CSXS/manifest.xml"));
  assert.deepEqual(result.errors.map((e) => e.message), []);
  assert.equal(result.valid, true);
});

test("the schema check has teeth: MinSize before MaxSize (the old manifest's order) is refused", async () => {
  const xml = read("CSXS/manifest.xml");
  const min = xml.match(/\s*<MinSize>[\s\S]*?<\/MinSize>/)[0];
  const max = xml.match(/\s*<MaxSize>[\s\S]*?<\/MaxSize>/)[0];
  const swapped = xml.replace(min, "\u0000").replace(max, min).replace("\u0000", max);
  assert.notEqual(swapped, xml);
  const result = await validate(swapped);
  assert.equal(result.valid, false);
  assert.match(result.errors[0].message, /Element 'M(in|ax)Size': This element is not expected/);
});

test("the UXP manifest targets Premiere 25.6+ with manifest v5, the package version and the CEP panel's minimum size", () => {
  const manifest = JSON.parse(read("uxp/manifest.json"));
  const version = JSON.parse(read("package.json")).version;
  assert.equal(manifest.manifestVersion, 5);
  assert.deepEqual(manifest.host, { app: "premierepro", minVersion: "25.6.0" });
  assert.equal(manifest.version, version);
  assert.match(read("uxp/index.html"), new RegExp(`data-version="${version.replace(/\./g, "\\.")}"`));
  const [panel] = manifest.entrypoints;
  assert.equal(panel.type, "panel");
  const xml = read("CSXS/manifest.xml");
  const min = xml.match(/<MinSize>\s*<Height>(\d+)<\/Height>\s*<Width>(\d+)<\/Width>/);
  assert.deepEqual(panel.minimumSize, { width: Number(min[2]), height: Number(min[1]) });
  for (const icon of panel.icons) assert.ok(fs.existsSync(path.join(root, icon.path)), icon.path);
  assert.deepEqual(panel.icons.map((i) => i.theme.includes("light")), [false, true], "a dark-theme and a light-theme icon");
  // The checked-in (development) network permission and the panel's allowed origins agree.
  const allowed = read("uxp/allowed-origins.js").match(/__SFX_ALLOWED_ORIGINS__ = (\[.*\]);/)[1];
  assert.deepEqual(manifest.requiredPermissions.network.domains, JSON.parse(allowed));
  for (const src of read("uxp/index.html").match(/(?<=src=")[^"]+/g)) assert.ok(fs.existsSync(path.join(root, src)), src);
});

test("both entry pages load the same shared scripts, in the same order", () => {
  const shared = (html) => html.match(/(?<=src=")(core|ui)\/[^"]+/g);
  assert.deepEqual(shared(read("index.html")), shared(read("uxp/index.html")));
});

test("the stylesheet uses nothing CEP 11's Chromium 88 ignores (accent-color came in Chromium 93)", () => {
  const css = read("ui/panel.css").replace(/\/\*[\s\S]*?\*\//g, "");
  assert.doesNotMatch(css, /accent-color\s*:/);
  assert.doesNotMatch(css, /:has\(/);
});

test("the UI stays split into small views: no ui/ script past 300 lines (the old app.js had 1,079)", () => {
  for (const name of fs.readdirSync(path.join(root, "ui")).filter((n) => n.endsWith(".js"))) {
    const lines = read(`ui/${name}`).split("\n").length;
    assert.ok(lines <= 300, `ui/${name} has ${lines} lines`);
  }
});
