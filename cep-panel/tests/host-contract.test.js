// The host adapter contract (core/host.js), one suite run against both adapters: the CEP adapter
// driving the real ExtendScript host (cep/host.jsx) on the simulated ExtendScript DOM, and the UXP
// adapter on the simulated `premierepro` module. Both get the same Premiere scenario and must give
// the editor the same outcome.
"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");

const { premiere } = require("./premiere-sim");
const PremiereproSim = require("./premierepro-sim");
const CepAdapter = require("../cep/host-adapter");
const UxpAdapter = require("../uxp/host-adapter");

function tempWav(name = "door-slam-3f9a.wav") {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sfx contract "));
  const file = path.join(dir, name);
  fs.writeFileSync(file, Buffer.from("RIFF....WAVEfmt "));
  return file;
}

/** Each maker builds a Premiere from a scenario and returns the adapter plus a uniform view of Premiere. */
const ADAPTERS = {
  cep(scenario) {
    const pr = premiere(scenario);
    const cs = {
      evalScript: (script, callback) => setImmediate(() => callback(pr.evalScript(script))),
      getSystemPath: () => "",
      hostEnvironment: { appVersion: "24.6.0", appSkinInfo: {} },
      addEventListener() {},
    };
    return {
      host: CepAdapter.create(cs),
      clipsOn: (i) => pr.sequence.track(i)._clips.map((c) => [c.start.seconds, c.end.seconds, c.name]),
      lockTrack: (i) => pr.sequence.track(i).setLocked(true),
      binNamed: (name) => pr.project.binNamed(name),
      binSize: (name) => pr.project.binNamed(name)._children.length,
      addBin: (name, parent) => pr.project.addBin(name, parent),
      imports: () => pr.project.calls("importFiles").length,
      binsCreated: () => pr.project.calls("createBin").map((c) => c[1]),
      refuseOverwrite: () => (pr.sequence.ignoreOverwrite = true),
      revealed: () => pr.revealed,
    };
  },
  uxp(scenario) {
    const world = PremiereproSim.create({ ...scenario, exists: (p) => fs.existsSync(p) });
    const uxp = { host: { version: "26.3.0" }, shell: { openPath: async (p) => world.revealed.push(p) } };
    return {
      host: UxpAdapter.create({ ppro: world.module, uxp, exists: async (p) => fs.existsSync(p) && fs.statSync(p).isFile() }),
      world,
      clipsOn: (i) => world.sequence.track(i)._clips.slice().sort((a, b) => a._start - b._start).map((c) => [c._start, c._end, c._name]),
      binNamed: (name) => world.project.binNamed(name),
      binSize: (name) => world.project.binNamed(name)._children.length,
      addBin: (name, parent) => world.project.addBin(name, parent),
      imports: () => world.calls("importFiles").length,
      binsCreated: () => world.calls("createBin").map((c) => c[1]),
      refuseOverwrite: () => (world.sequence.ignoreOverwrite = true),
      revealed: () => world.revealed,
    };
  },
};

for (const [name, make] of Object.entries(ADAPTERS)) {
  const it = (title, fn) => test(`[${name}] ${title}`, fn);

  it("importAndPlace creates the AI SFX bin and places the clip on the first free audio track at the playhead", async () => {
    const file = tempWav();
    const p = make({ project: { durations: { [file]: 2 } }, sequence: { playhead: 10, tracks: [{ clips: [[9, 11]] }, {}, {}] } });
    const result = await p.host.importAndPlace(file, { duration: 2, bin: "AI SFX", track: "auto" });
    assert.deepEqual(result, { placed: true, track: 1, trackName: "A2", time: 10, bin: "AI SFX", item: "door-slam-3f9a.wav", sequence: "Main edit" });
    assert.ok(p.binNamed("AI SFX"));
    assert.deepEqual(p.binsCreated(), ["AI SFX"]);
    assert.deepEqual(p.clipsOn(1), [[10, 12, "door-slam-3f9a.wav"]]);
    assert.deepEqual(p.clipsOn(0), [[9, 11, "existing clip"]], "the busy track is untouched");
  });

  it("a clip that ends at the playhead or starts right after the new clip does not block a track", async () => {
    const p = make({ sequence: { playhead: 5, tracks: [{ clips: [[1, 5], [7, 9]] }, {}] } });
    assert.equal((await p.host.importAndPlace(tempWav(), { duration: 2 })).track, 0);
  });

  it("free-track choice skips every track with a clip overlapping [time, time + duration]", async () => {
    const p = make({ sequence: { playhead: 4, tracks: [{ clips: [[5.5, 8]] }, { clips: [[0, 4.2]] }, { clips: [[3, 30]] }, {}] } });
    const result = await p.host.importAndPlace(tempWav(), { duration: 2 });
    assert.equal(result.track, 3);
    assert.equal(result.trackName, "A4");
  });

  it("a locked track never receives the clip: skipped where the host can tell, reported where it cannot", async () => {
    const file = tempWav();
    const p = make({ sequence: { playhead: 0, tracks: [{ locked: true }, {}] } });
    const knows = p.host.info().lockedTracksKnown;
    if (knows) {
      assert.equal((await p.host.importAndPlace(file, { duration: 1 })).track, 1);
    } else {
      await assert.rejects(p.host.importAndPlace(file, { duration: 1 }), { code: "place_failed", message: /A1 \(is the track locked\?\); it is in the bin "AI SFX"/ });
    }
    assert.deepEqual(p.clipsOn(0), [], "nothing landed on the locked track");
  });

  it("with no free track the adapter says so and imports nothing, so the panel can offer the bin", async () => {
    const p = make({ sequence: { playhead: 3, tracks: [{ clips: [[0, 10]] }, { clips: [[2, 4]] }] } });
    await assert.rejects(p.host.importAndPlace(tempWav(), { duration: 1 }), { code: "no_free_track", message: /import to the bin/i });
    assert.equal(p.imports(), 0);
    assert.equal(p.binNamed("AI SFX"), null);
  });

  it("a chosen track is used even when an earlier one is free; a busy or missing chosen track is refused", async () => {
    const file = tempWav();
    const p = make({ sequence: { playhead: 2, tracks: [{}, {}, { clips: [[1, 3]] }] } });
    assert.equal((await p.host.importAndPlace(file, { duration: 1, track: 1 })).track, 1);
    await assert.rejects(p.host.importAndPlace(file, { duration: 1, track: 2 }), { code: "track_occupied" });
    await assert.rejects(p.host.importAndPlace(file, { duration: 1, track: 7 }), { code: "track_not_found" });
  });

  it("with no active sequence the file goes into the bin only and the editor is told why", async () => {
    const p = make({ sequence: null });
    const result = await p.host.importAndPlace(tempWav("rain-on-tin-roof-12ab.wav"), { duration: 3, bin: "Rain" });
    assert.deepEqual(result, {
      placed: false,
      reason: "no_sequence",
      message: 'No active sequence: "rain-on-tin-roof-12ab.wav" was imported into the bin "Rain".',
      bin: "Rain",
      item: "rain-on-tin-roof-12ab.wav",
    });
    assert.equal(p.binSize("Rain"), 1);
  });

  it("with no open project every call that needs one answers no_project", async () => {
    const file = tempWav();
    const p = make({ project: null });
    await assert.rejects(p.host.importAndPlace(file, { duration: 1 }), { code: "no_project" });
    await assert.rejects(p.host.importToBin(file, "AI SFX"), { code: "no_project" });
    assert.deepEqual(await p.host.getContext(), { project: null, sequence: null });
  });

  it("a missing file is refused before Premiere is asked to import it", async () => {
    const p = make({});
    const gone = path.join(os.tmpdir(), "no-such-dir-sfx", "gone.wav");
    await assert.rejects(p.host.importAndPlace(gone, { duration: 1 }), { code: "file_missing", message: /gone\.wav/ });
    await assert.rejects(p.host.importToBin(gone, "AI SFX"), { code: "file_missing" });
    await assert.rejects(p.host.revealFile(gone), { code: "file_missing" });
    assert.equal(p.imports(), 0);
  });

  it("importToBin reuses an existing nested bin and never imports the same file twice", async () => {
    const file = tempWav();
    const p = make({});
    p.addBin("AI SFX", p.addBin("Sound"));
    assert.deepEqual(await p.host.importToBin(file, "AI SFX"), { bin: "AI SFX", binCreated: false, item: "door-slam-3f9a.wav", imported: true });
    assert.equal((await p.host.importToBin(file, "AI SFX")).imported, false);
    assert.equal(p.imports(), 1);
    assert.deepEqual(p.binsCreated(), []);
    assert.equal((await p.host.importToBin(file)).bin, "AI SFX", "the default bin is AI SFX");
  });

  it("when Premiere imports nothing (importFiles still answers true) the adapter reports import_failed", async () => {
    const p = make({ project: { importNothing: true } });
    await assert.rejects(p.host.importAndPlace(tempWav(), { duration: 1 }), { code: "import_failed" });
  });

  it("a clip that is not on the track when re-read is reported, not assumed", async () => {
    const p = make({});
    p.refuseOverwrite();
    await assert.rejects(p.host.importAndPlace(tempWav(), { duration: 1 }), { code: "place_failed", message: /in the bin "AI SFX"/ });
  });

  it("an explicit time (a marker) is used instead of the playhead", async () => {
    const p = make({ sequence: { playhead: 1, tracks: [{ clips: [[11, 14]] }, {}] } });
    const result = await p.host.importAndPlace(tempWav(), { duration: 2, time: 12.5 });
    assert.equal(result.time, 12.5);
    assert.equal(result.track, 1);
    assert.deepEqual(p.clipsOn(1), [[12.5, 14.5, "door-slam-3f9a.wav"]]);
  });

  it("getContext reports project, sequence, playhead, frame rate and audio tracks", async () => {
    const p = make({
      project: { name: "Doc.prproj", path: "/Volumes/Media/Doc.prproj" },
      sequence: { name: "Cut 3", fps: 23.976, playhead: 42.5, duration: 600, tracks: [{ name: "Dialogue" }, { locked: true, clips: [[0, 1]] }] },
    });
    const lockedA2 = p.host.info().lockedTracksKnown ? true : null;
    assert.deepEqual(await p.host.getContext(), {
      project: { name: "Doc.prproj", path: "/Volumes/Media/Doc.prproj" },
      sequence: {
        id: "seq-cut-3",
        name: "Cut 3",
        playhead: 42.5,
        frameRate: 23.976,
        duration: 600,
        audioTracks: [
          { index: 0, name: "Dialogue", locked: p.host.info().lockedTracksKnown ? false : null, clips: 0 },
          { index: 1, name: "A2", locked: lockedA2, clips: 1 },
        ],
      },
    });
  });

  it("getMarkers lists the sequence markers in order with time, name and comments", async () => {
    const p = make({ sequence: { markers: [[1.5, "Door", "heavy door slams"], [8, "", 'rain "outside"']] } });
    assert.deepEqual(await p.host.getMarkers(), {
      sequence: "Main edit",
      markers: [
        { time: 1.5, end: 1.5, name: "Door", comments: "heavy door slams" },
        { time: 8, end: 8, name: "", comments: 'rain "outside"' },
      ],
    });
    await assert.rejects(make({ sequence: null }).host.getMarkers(), { code: "no_sequence" });
  });

  it("revealFile opens the folder that holds the file", async () => {
    const file = tempWav();
    const p = make({});
    assert.deepEqual(await p.host.revealFile(file), { folder: path.dirname(file) });
    assert.deepEqual(p.revealed(), [path.dirname(file)]);
  });

  it("paths and bin names with quotes, backslashes, non-ASCII and spaces arrive intact", async () => {
    const file = tempWav('Tür "knallt" \\ zu — 🎬.wav');
    const p = make({});
    const result = await p.host.importToBin(file, 'Bin "quoted" \\ ü');
    assert.equal(result.item, path.basename(file));
    assert.ok(p.binNamed('Bin "quoted" \\ ü'));
  });
}

// The simulated premierepro module must hold the UXP adapter to Premiere's rules, or the suite above
// would prove nothing about them.
test("[uxp sim] Actions exist only inside lockedAccess, run only in a transaction, and take TickTime", async () => {
  const world = PremiereproSim.create({});
  const ppro = world.module;
  const project = await ppro.Project.getActiveProject();
  const root = await project.getRootItem();
  assert.throws(() => root.createBinAction("X", false), /inside project\.lockedAccess/);
  assert.throws(() => project.executeTransaction(() => {}, "x"), /inside project\.lockedAccess/);
  const seq = await project.getActiveSequence();
  const editor = ppro.SequenceEditor.getEditor(seq);
  project.lockedAccess(() => {
    assert.throws(() => editor.createOverwriteItemAction(root, 12.5, 0, 0), /TickTime/);
    // An Action that is never added to a transaction changes nothing.
    root.createBinAction("Never added", false);
  });
  assert.equal(world.project.binNamed("Never added"), null);
  let late = null;
  project.lockedAccess(() => project.executeTransaction((compound) => (late = compound), "keep"));
  project.lockedAccess(() => assert.throws(() => late.addAction(root.createBinAction("Late", false)), /after the transaction ended/));
  assert.equal(project.lockedAccess(() => project.executeTransaction(() => { throw new Error("boom"); })), undefined);
  assert.equal(world.project.binNamed("Late"), null);
});

test("[uxp] previews open in the Source Monitor and play there (UXP has no Web Audio)", async () => {
  const file = tempWav();
  const world = PremiereproSim.create({ exists: (p) => fs.existsSync(p) });
  const host = UxpAdapter.create({ ppro: world.module, exists: async (p) => fs.existsSync(p) });
  assert.deepEqual(await host.preview(file), { opened: true });
  assert.equal(world.sourceMonitor.opened, file);
  assert.equal(world.sourceMonitor.playing, true);
  await host.stopPreview();
  assert.equal(world.sourceMonitor.playing, false);
});

test("[uxp] the theme follows UXP's theme name and its changes", () => {
  let listener = null;
  let current = "light";
  const document = { theme: { getCurrent: () => current, onUpdated: { addListener: (fn) => (listener = fn), removeListener: () => (listener = null) } } };
  const host = UxpAdapter.create({ ppro: PremiereproSim.create({}).module, exists: async () => true, document });
  assert.deepEqual(host.getTheme().background, UxpAdapter.THEMES.light);
  const seen = [];
  const off = host.onThemeChange((t) => seen.push(t.name));
  current = "darkest";
  listener();
  assert.deepEqual(seen, ["darkest"]);
  off();
  assert.equal(listener, null);
});
