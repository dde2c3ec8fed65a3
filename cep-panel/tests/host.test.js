// The ExtendScript host (jsx/host.jsx) run in Node against a simulated Premiere (premiere-sim.js),
// called exactly as the panel calls it: through the CEP adapter's script builder.
"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");

const { premiere } = require("./premiere-sim");
const { buildScript, decodeReply } = require("../cep/host-adapter");

function tempWav(name = "door-slam-3f9a.wav") {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sfx host "));
  const file = path.join(dir, name);
  fs.writeFileSync(file, Buffer.from("RIFF....WAVEfmt "));
  return file;
}

/** Calls the host like the panel does and returns the parsed envelope (and checks it is JSON text). */
function call(pr, name, args) {
  const raw = pr.evalScript(buildScript(name, args));
  assert.equal(typeof raw, "string", "the host always answers a string");
  return JSON.parse(raw);
}

function clipsOn(track) {
  return track._clips.map((c) => [c.start.seconds, c.end.seconds, c.name]);
}

test("importAndPlace creates the AI SFX bin and places the clip on the first free audio track at the playhead", () => {
  const file = tempWav();
  const pr = premiere({
    project: { durations: { [file]: 2 } },
    sequence: { playhead: 10, tracks: [{ clips: [[9, 11]] }, { locked: true }, {}] },
  });
  const reply = call(pr, "importAndPlace", { path: file, duration: 2, bin: "AI SFX", track: "auto" });
  assert.deepEqual(reply, {
    ok: true,
    result: { placed: true, track: 2, trackName: "A3", time: 10, bin: "AI SFX", item: "door-slam-3f9a.wav", sequence: "Main edit" },
  });
  assert.ok(pr.project.binNamed("AI SFX"), "the bin exists at the project root");
  assert.deepEqual(pr.project.calls("createBin"), [["createBin", "AI SFX"]]);
  assert.deepEqual(clipsOn(pr.sequence.track(2)), [[10, 12, "door-slam-3f9a.wav"]]);
  assert.deepEqual(clipsOn(pr.sequence.track(0)), [[9, 11, "existing clip"]], "the busy track is untouched");
});

test("a clip that ends exactly at the playhead or starts right after the new clip does not block a track", () => {
  const file = tempWav();
  const pr = premiere({ sequence: { playhead: 5, tracks: [{ clips: [[1, 5], [7, 9]] }, {}] } });
  const reply = call(pr, "importAndPlace", { path: file, duration: 2 });
  assert.equal(reply.ok, true);
  assert.equal(reply.result.track, 0);
});

test("free-track choice skips every track with a clip overlapping [playhead, playhead + duration]", () => {
  const file = tempWav();
  const pr = premiere({
    sequence: { playhead: 4, tracks: [{ clips: [[5.5, 8]] }, { clips: [[0, 4.2]] }, { clips: [[3, 30]] }, {}] },
  });
  const reply = call(pr, "importAndPlace", { path: file, duration: 2 });
  assert.equal(reply.result.track, 3);
  assert.equal(reply.result.trackName, "A4");
});

test("a short clip fits before a later clip on the same track", () => {
  const file = tempWav();
  const pr = premiere({ sequence: { playhead: 4, tracks: [{ clips: [[6.5, 8]] }] } });
  assert.equal(call(pr, "importAndPlace", { path: file, duration: 2 }).result.track, 0);
});

test("locked tracks are never chosen automatically", () => {
  const file = tempWav();
  const pr = premiere({ sequence: { playhead: 0, tracks: [{ locked: true }, { locked: true }, {}] } });
  const reply = call(pr, "importAndPlace", { path: file, duration: 1 });
  assert.equal(reply.result.track, 2);
  assert.deepEqual(clipsOn(pr.sequence.track(0)), []);
});

test("with no free track the host says so and imports nothing, so the panel can offer the bin", () => {
  const file = tempWav();
  const pr = premiere({ sequence: { playhead: 3, tracks: [{ clips: [[0, 10]] }, { locked: true }] } });
  const reply = call(pr, "importAndPlace", { path: file, duration: 1 });
  assert.equal(reply.ok, false);
  assert.equal(reply.error.code, "no_free_track");
  assert.match(reply.error.message, /import to the bin/i);
  assert.deepEqual(pr.project.calls("importFiles"), []);
  assert.equal(pr.project.binNamed("AI SFX"), null);
});

test("a locked chosen track is refused with track_locked and nothing is imported", () => {
  const file = tempWav();
  const pr = premiere({ sequence: { tracks: [{}, { name: "Foley", locked: true }] } });
  const reply = call(pr, "importAndPlace", { path: file, duration: 1, track: 1 });
  assert.deepEqual(reply, { ok: false, error: { code: "track_locked", message: "Foley is locked. Unlock it or choose another track." } });
  assert.deepEqual(pr.project.calls("importFiles"), []);
});

test("a chosen track is used even when an earlier track is free, and a busy chosen track is refused", () => {
  const file = tempWav();
  const pr = premiere({ sequence: { playhead: 2, tracks: [{}, {}, { clips: [[1, 3]] }] } });
  assert.equal(call(pr, "importAndPlace", { path: file, duration: 1, track: 1 }).result.track, 1);
  const busy = call(pr, "importAndPlace", { path: file, duration: 1, track: 2 });
  assert.equal(busy.error.code, "track_occupied");
  const missing = call(pr, "importAndPlace", { path: file, duration: 1, track: 7 });
  assert.equal(missing.error.code, "track_not_found");
});

test("with no active sequence the file is imported into the bin only and the panel is told why", () => {
  const file = tempWav("rain-on-tin-roof-12ab.wav");
  const pr = premiere({ sequence: null });
  const reply = call(pr, "importAndPlace", { path: file, duration: 3, bin: "Rain" });
  assert.deepEqual(reply, {
    ok: true,
    result: {
      placed: false,
      reason: "no_sequence",
      message: 'No active sequence: "rain-on-tin-roof-12ab.wav" was imported into the bin "Rain".',
      bin: "Rain",
      item: "rain-on-tin-roof-12ab.wav",
    },
  });
  assert.equal(pr.project.binNamed("Rain")._children.length, 1);
});

test("with no open project every call that needs one answers no_project", () => {
  const file = tempWav();
  const pr = premiere({ project: null });
  assert.equal(call(pr, "importAndPlace", { path: file, duration: 1 }).error.code, "no_project");
  assert.equal(call(pr, "importToBin", { path: file }).error.code, "no_project");
  assert.deepEqual(call(pr, "getContext", {}), { ok: true, result: { project: null, sequence: null } });
});

test("a missing file is refused before Premiere is asked to import it", () => {
  const pr = premiere({});
  const gone = path.join(os.tmpdir(), "no-such-dir-sfx", "gone.wav");
  const reply = call(pr, "importAndPlace", { path: gone, duration: 1 });
  assert.equal(reply.error.code, "file_missing");
  assert.match(reply.error.message, /gone\.wav/);
  assert.deepEqual(pr.project.calls("importFiles"), []);
  assert.equal(call(pr, "importToBin", { path: gone }).error.code, "file_missing");
  assert.equal(call(pr, "revealFile", { path: gone }).error.code, "file_missing");
});

test("importToBin reuses an existing nested bin and never imports the same file twice", () => {
  const file = tempWav();
  const pr = premiere({});
  const parent = pr.project.addBin("Sound");
  pr.project.addBin("AI SFX", parent);
  const first = call(pr, "importToBin", { path: file, bin: "AI SFX" });
  assert.deepEqual(first.result, { bin: "AI SFX", binCreated: false, item: "door-slam-3f9a.wav", imported: true });
  const second = call(pr, "importToBin", { path: file, bin: "AI SFX" });
  assert.equal(second.result.imported, false);
  assert.equal(pr.project.calls("importFiles").length, 1);
  assert.deepEqual(pr.project.calls("createBin"), []);
  assert.equal(pr.project.calls("importFiles")[0][2], "AI SFX", "imported straight into the bin");
});

test("the default bin is AI SFX when the panel sends no bin name", () => {
  const file = tempWav();
  const pr = premiere({});
  assert.equal(call(pr, "importToBin", { path: file }).result.bin, "AI SFX");
});

test("when Premiere imports nothing (importFiles still answers true) the host reports import_failed", () => {
  const file = tempWav();
  const pr = premiere({ project: { importNothing: true } });
  const reply = call(pr, "importAndPlace", { path: file, duration: 1 });
  assert.equal(reply.error.code, "import_failed");
});

test("a clip that did not land on the track after overwriteClip is reported, not assumed", () => {
  const file = tempWav();
  const pr = premiere({});
  pr.sequence.ignoreOverwrite = true;
  const reply = call(pr, "importAndPlace", { path: file, duration: 1 });
  assert.equal(reply.error.code, "place_failed");
  assert.match(reply.error.message, /in the bin "AI SFX"/);
});

test("an explicit time (a marker) is used instead of the playhead", () => {
  const file = tempWav();
  const pr = premiere({ sequence: { playhead: 1, tracks: [{ clips: [[11, 14]] }, {}] } });
  const reply = call(pr, "importAndPlace", { path: file, duration: 2, time: 12.5 });
  assert.equal(reply.result.time, 12.5);
  assert.equal(reply.result.track, 1);
  assert.deepEqual(pr.project.calls("overwriteClip")[0], ["overwriteClip", 1, "door-slam-3f9a.wav", 12.5]);
});

test("getContext reports project, sequence, playhead, frame rate and audio tracks", () => {
  const pr = premiere({
    project: { name: "Doc.prproj", path: "/Volumes/Media/Doc.prproj" },
    sequence: { name: "Cut 3", fps: 23.976, playhead: 42.5, tracks: [{ name: "Dialogue" }, { locked: true, clips: [[0, 1]] }] },
  });
  assert.deepEqual(call(pr, "getContext", {}), {
    ok: true,
    result: {
      project: { name: "Doc.prproj", path: "/Volumes/Media/Doc.prproj" },
      sequence: {
        id: "seq-cut-3",
        name: "Cut 3",
        playhead: 42.5,
        frameRate: 23.976,
        duration: 1, // Sequence.end: where its last clip ends
        audioTracks: [
          { index: 0, name: "Dialogue", locked: false, clips: 0 },
          { index: 1, name: "A2", locked: true, clips: 1 },
        ],
      },
    },
  });
});

test("getMarkers lists the sequence markers in order with time, name and comments", () => {
  const pr = premiere({ sequence: { markers: [[1.5, "Door", "heavy door slams"], [8, "", 'rain "outside"']] } });
  assert.deepEqual(call(pr, "getMarkers", {}).result, {
    sequence: "Main edit",
    markers: [
      { time: 1.5, end: 1.5, name: "Door", comments: "heavy door slams" },
      { time: 8, end: 8, name: "", comments: 'rain "outside"' },
    ],
  });
  assert.equal(call(premiere({ sequence: null }), "getMarkers", {}).error.code, "no_sequence");
});

test("revealFile opens the folder that holds the file", () => {
  const file = tempWav();
  const pr = premiere({});
  assert.deepEqual(call(pr, "revealFile", { path: file }).result, { folder: path.dirname(file) });
  assert.deepEqual(pr.revealed, [path.dirname(file)]);
});

test("paths with quotes, backslashes, non-ASCII and spaces survive the trip to the host intact", () => {
  const file = tempWav('Tür "knallt" \\ zu — 🎬.wav');
  const pr = premiere({});
  const reply = call(pr, "importToBin", { path: file, bin: 'Bin "quoted" \\ ü' });
  assert.equal(reply.ok, true, JSON.stringify(reply));
  assert.equal(reply.result.item, path.basename(file));
  assert.ok(pr.project.binNamed('Bin "quoted" \\ ü'));
});

test("the host never throws: unknown calls, broken arguments and DOM exceptions come back as error envelopes", () => {
  const pr = premiere({});
  assert.equal(JSON.parse(pr.evalScript('SFXHost.call("formatDisk","")')).error.code, "unknown_call");
  assert.equal(JSON.parse(pr.evalScript('SFXHost.call("importToBin","%7Bbroken")')).error.code, "bad_arguments");
  Object.defineProperty(pr.project, "activeSequence", {
    get() {
      throw new Error("Premiere is shutting down");
    },
  });
  const reply = JSON.parse(pr.evalScript(buildScript("getContext", {})));
  assert.equal(reply.ok, false);
  assert.equal(reply.error.code, "host_error");
  assert.match(reply.error.message, /shutting down/);
});

test("the host's JSON writer escapes control characters and its reader round-trips nested values", () => {
  const pr = premiere({});
  const value = { a: [1, -2.5e3, true, false, null], b: "line\nbreak\ttab \u0001 \u2028", c: { d: "" } };
  const text = pr.evalScript(`SFXJSON.stringify(SFXJSON.parse(decodeURIComponent("${encodeURIComponent(JSON.stringify(value))}")))`);
  assert.deepEqual(JSON.parse(text), value);
});

test("the panel side decodes envelopes into results or HostErrors, including ExtendScript's bare error string", () => {
  assert.deepEqual(decodeReply('{"ok":true,"result":{"x":1}}'), { x: 1 });
  assert.throws(() => decodeReply('{"ok":false,"error":{"code":"no_free_track","message":"m"}}'), { code: "no_free_track", message: "m" });
  assert.throws(() => decodeReply("EvalScript error."), { code: "host_unavailable" });
  assert.throws(() => decodeReply("<html>"), { code: "bad_reply" });
  assert.throws(() => buildScript("eval", {}), { code: "unknown_call" });
});
