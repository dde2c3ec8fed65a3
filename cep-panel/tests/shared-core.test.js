// The shared core's small rules: timecode display, when Generate is blocked, reading WAV samples.
"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");

const Format = require("../core/format");
const State = require("../core/state");
const Wav = require("../core/wav");

test("timeline times read as the sequence's timecode; without a sequence as minutes and seconds", () => {
  assert.equal(Format.timecode(12.5, 25), "00:00:12:12");
  assert.equal(Format.timecode(42, 25), "00:00:42:00");
  assert.equal(Format.timecode(3725.04, 25), "01:02:05:01");
  assert.equal(Format.timecode(1.001, 23.976), "00:00:01:00");
  assert.equal(Format.timecode(10.01, 29.97), "00:00:10:00");
  assert.equal(Format.timecode(12.5, null), "0:12.5");
});

test("Generate is blocked by a mandatory update, a running generation, a Retry-After wait or 0 credits", () => {
  const base = { ...State.initial(), me: { credits: { remaining: 3 } } };
  assert.equal(State.generateBlock(base), "");
  assert.equal(State.generateBlock({ ...base, me: { credits: { remaining: 0 } } }), "credits");
  assert.equal(State.generateBlock({ ...base, me: { credits: { remaining: 0, unlimited: true } } }), "");
  assert.equal(State.generateBlock({ ...base, waitUntil: Date.now() + 5000 }), "wait");
  assert.equal(State.generateBlock({ ...base, busy: { kind: "sfx" } }), "busy");
  assert.equal(State.generateBlock({ ...base, spotting: true }), "busy");
  assert.equal(State.generateBlock({ ...base, update: { version: "2.0.0", mandatory: false } }), "");
  assert.equal(State.generateBlock({ ...base, update: { version: "2.0.0", mandatory: true } }), "update");
});

test("the state store tells only the subscribers whose keys changed", () => {
  const store = new State.Store();
  const seen = [];
  store.subscribe(["marker"], (v) => seen.push(["marker", v.marker]));
  const off = store.subscribe(["busy", "update"], () => seen.push(["busy/update"]));
  store.set({ marker: { time: 4 } });
  store.set({ marker: store.get("marker") }); // unchanged: nobody is told
  store.set({ update: { version: "1" } });
  off();
  store.set({ busy: { kind: "sfx" } });
  assert.deepEqual(seen, [["marker", { time: 4 }], ["busy/update"]]);
});

function wav({ rate = 48000, channels = 1, bits = 16, format = 1, samples }) {
  const bytesPer = bits / 8;
  const data = Buffer.alloc(samples.length * bytesPer);
  samples.forEach((v, i) => {
    if (format === 3) data.writeFloatLE(v, i * 4);
    else if (bits === 16) data.writeInt16LE(Math.round(v * 32767), i * 2);
    else data.writeIntLE(Math.round(v * 8388607), i * 3, 3);
  });
  const header = Buffer.alloc(44);
  header.write("RIFF", 0);
  header.writeUInt32LE(36 + data.length, 4);
  header.write("WAVEfmt ", 8);
  header.writeUInt32LE(16, 16);
  header.writeUInt16LE(format, 20);
  header.writeUInt16LE(channels, 22);
  header.writeUInt32LE(rate, 24);
  header.writeUInt32LE(rate * channels * bytesPer, 28);
  header.writeUInt16LE(channels * bytesPer, 32);
  header.writeUInt16LE(bits, 34);
  header.write("data", 36);
  header.writeUInt32LE(data.length, 40);
  const all = Buffer.concat([header, data]);
  return all.buffer.slice(all.byteOffset, all.byteOffset + all.length);
}

test("WAVs are read into per-channel samples at 16 and 24 bits and as 32-bit float", () => {
  const s16 = Wav.decode(wav({ samples: [0, 0.5, -0.5, 1], channels: 2, rate: 2 }));
  assert.equal(s16.channels.length, 2);
  assert.equal(s16.duration, 1);
  assert.ok(Math.abs(s16.channels[0][1] - -0.5) < 1e-4 && Math.abs(s16.channels[1][0] - 0.5) < 1e-4);
  const s24 = Wav.decode(wav({ bits: 24, samples: [0.25, -1] }));
  assert.ok(Math.abs(s24.channels[0][0] - 0.25) < 1e-6 && s24.channels[0][1] <= -0.99);
  assert.equal(s24.bitsPerSample, 24);
  const f32 = Wav.decode(wav({ bits: 32, format: 3, samples: [0.125] }));
  assert.equal(f32.channels[0][0], 0.125);
  assert.throws(() => Wav.decode(new TextEncoder().encode("<html>not audio</html>").buffer), { code: "bad_wav" });
});
