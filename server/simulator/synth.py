"""Real audio for the simulator: deterministic sound effects, espeak-ng speech, encoders.

Everything here produces actual decodable audio of the requested length so the proxy's whole
pipeline (decode, post-process, store, serve) runs against it. Signals are built with `audioop`
(C speed, part of the standard library on 3.11 and what pydub uses itself), so a 30-second
clip takes milliseconds; encoded results are kept in a bounded LRU so repeated requests are
answered without work.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import math
import random
import shutil
import struct
import warnings
import wave
from collections import OrderedDict
from dataclasses import dataclass
from typing import Awaitable, Callable, Hashable

from server.simulator.catalog import OutputFormat

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

SAMPLE_WIDTH = 2  # every synthesised signal is mono s16le before encoding
_GAIN_STEP_SECONDS = 0.005


class SynthesisError(RuntimeError):
    """An encoder or speech engine failed; the simulator answers 500 like a real outage."""


# --- sound effects ------------------------------------------------------------------------

def automatic_duration(prompt: str) -> float:
    """The length the "model" picks when none is given: stable per prompt, 1.0 to 6.0 s."""
    digest = hashlib.sha256(_normalise(prompt).encode()).digest()
    return 1.0 + (int.from_bytes(digest[:2], "big") % 51) / 10


def synth_sfx(prompt: str, duration: float, *, loop: bool, sample_rate: int, take: int = 0) -> bytes:
    """Filtered noise plus a tone, shaped by bursts; every choice comes from the prompt and the take
    (the real service answers each request with a new take of the same prompt)."""
    rng = random.Random(hashlib.sha256(f"{_normalise(prompt)}\n{take}".encode()).digest())
    frames = max(1, round(duration * sample_rate))
    noise = _smoothed_noise(rng, frames, passes=rng.randint(0, 5))
    tone = _tone(sample_rate // rng.randint(40, 900), frames)
    noise_level = rng.uniform(0.35, 0.8)
    body = audioop.add(audioop.mul(noise, SAMPLE_WIDTH, noise_level),
                       audioop.mul(tone, SAMPLE_WIDTH, 0.9 - noise_level), SAMPLE_WIDTH)
    envelope = _loop_envelope(rng, duration) if loop else _burst_envelope(rng, duration)
    return _apply_envelope(body, envelope, sample_rate)


def _normalise(prompt: str) -> str:
    return " ".join(prompt.lower().split())


def _smoothed_noise(rng: random.Random, frames: int, passes: int) -> bytes:
    # Full-scale white noise, then moving-average passes (circular, so loops stay seamless).
    noise = rng.randbytes(frames * SAMPLE_WIDTH)
    for _ in range(passes):
        shifted = noise[SAMPLE_WIDTH:] + noise[:SAMPLE_WIDTH]
        noise = audioop.add(audioop.mul(noise, SAMPLE_WIDTH, 0.5), audioop.mul(shifted, SAMPLE_WIDTH, 0.5), SAMPLE_WIDTH)
    return noise


def _tone(period: int, frames: int) -> bytes:
    # A whole number of samples per cycle: one cycle tiles without clicks and costs `period` sins.
    cycle = struct.pack(
        f"<{period}h",
        *(int(20000 * (0.7 * math.sin(2 * math.pi * t / period) + 0.3 * math.sin(4 * math.pi * t / period)))
          for t in range(period)),
    )
    return (cycle * (frames // period + 1))[: frames * SAMPLE_WIDTH]


def _burst_envelope(rng: random.Random, duration: float) -> Callable[[float], float]:
    bursts = [
        (rng.uniform(0, duration * 0.6), rng.uniform(0.003, 0.05), rng.uniform(0.05, 0.4) * duration + 0.02)
        for _ in range(rng.randint(1, 5))
    ]
    bursts[0] = (0.0, bursts[0][1], bursts[0][2])  # sound starts at once, as generated SFX do
    tail_start = duration * 0.85

    def gain(t: float) -> float:
        level = 0.0
        for start, attack, decay in bursts:
            if t >= start:
                dt = t - start
                level += min(1.0, dt / attack) * math.exp(-(dt - attack) / decay if dt > attack else 0.0)
        # The last 15% dies away, leaving a near-silent tail like real generations have.
        if t > tail_start:
            level *= max(0.0, 1 - (t - tail_start) / (duration - tail_start)) ** 3
        return min(level, 1.0)

    return gain


def _loop_envelope(rng: random.Random, duration: float) -> Callable[[float], float]:
    # Whole cycles over the clip: the end joins the start seamlessly.
    cycles = rng.randint(1, 4)
    return lambda t: 0.65 + 0.3 * math.sin(2 * math.pi * cycles * t / duration)


def _apply_envelope(signal: bytes, gain: Callable[[float], float], sample_rate: int) -> bytes:
    step = max(1, int(sample_rate * _GAIN_STEP_SECONDS)) * SAMPLE_WIDTH
    parts = []
    for offset in range(0, len(signal), step):
        t = offset / SAMPLE_WIDTH / sample_rate
        parts.append(audioop.mul(signal[offset:offset + step], SAMPLE_WIDTH, gain(t)))
    return b"".join(parts)


# --- speech -------------------------------------------------------------------------------

def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


async def synth_speech(text: str, *, espeak_variant: str, pitch: int, speed: float, sample_rate: int) -> bytes:
    """Speech as mono s16le at `sample_rate`: espeak-ng when installed, else a tone per word."""
    if espeak_available():
        wav = await _run(
            ["espeak-ng", "--stdin", "--stdout", "-v", espeak_variant, "-p", str(pitch),
             "-s", str(round(175 * min(max(speed, 0.5), 2.0)))],
            text.encode(),
        )
        frames, rate = read_wav_frames(wav)
        return audioop.ratecv(frames, SAMPLE_WIDTH, 1, rate, sample_rate, None)[0] if rate != sample_rate else frames
    return _tone_speech(text, speed, sample_rate)


def _tone_speech(text: str, speed: float, sample_rate: int) -> bytes:
    # About 14 characters per second, as a human reads: one short tone per word, gaps between.
    parts = []
    for word in text.split():
        length = max(0.12, len(word) / 14 / speed)
        period = sample_rate // (140 + sum(word.encode()) % 120)
        parts.append(_apply_envelope(_tone(period, round(length * sample_rate)),
                                     lambda t, n=length: math.sin(math.pi * min(t / n, 1.0)), sample_rate))
        parts.append(b"\0\0" * round(0.07 / speed * sample_rate))
    return b"".join(parts) or b"\0\0" * (sample_rate // 4)


def read_wav_frames(data: bytes) -> tuple[bytes, int]:
    """The frames and rate of a mono 16-bit WAV, tolerating the 'unknown length' header of streamed WAVs."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise SynthesisError("speech engine produced no WAV")
    pos, rate = 12, None
    while pos + 8 <= len(data):
        chunk, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        if chunk == b"fmt ":
            rate = struct.unpack("<I", data[pos + 12:pos + 16])[0]
        elif chunk == b"data":
            frames = data[pos + 8:pos + 8 + size]
            return frames[: len(frames) // SAMPLE_WIDTH * SAMPLE_WIDTH], rate or 22050
        pos += 8 + size + (size & 1)
    raise SynthesisError("speech engine produced an empty WAV")


# --- encoders -----------------------------------------------------------------------------

async def encode(pcm: bytes, fmt: OutputFormat) -> bytes:
    """Mono s16le at fmt.sample_rate to the wire format ElevenLabs would send."""
    if fmt.codec == "pcm":
        return pcm
    if fmt.codec == "wav":
        return wav_bytes(pcm, fmt.sample_rate)
    if fmt.codec == "ulaw":
        return audioop.lin2ulaw(pcm, SAMPLE_WIDTH)
    if fmt.codec == "alaw":
        return audioop.lin2alaw(pcm, SAMPLE_WIDTH)
    codec_args = {"mp3": ["-c:a", "libmp3lame", "-f", "mp3"], "opus": ["-c:a", "libopus", "-f", "ogg"]}[fmt.codec]
    return await _run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-f", "s16le", "-ar", str(fmt.sample_rate),
         "-ac", "1", "-i", "pipe:0", *codec_args, "-b:a", f"{fmt.bitrate_kbps}k", "pipe:1"],
        pcm,
    )


def wav_bytes(pcm: bytes, sample_rate: int, sample_width: int = SAMPLE_WIDTH, channels: int = 1) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(sample_width)
        w.setframerate(sample_rate)
        w.writeframes(pcm)
    return out.getvalue()


async def _run(argv: list[str], stdin: bytes) -> bytes:
    # An asyncio subprocess: the event loop keeps serving while the tool works.
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await proc.communicate(stdin)
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    if proc.returncode != 0 or not out:
        raise SynthesisError(f"{argv[0]} failed: {err.decode(errors='replace')[-200:]}")
    return out


class _Abandoned(Exception):
    pass


# --- cache --------------------------------------------------------------------------------

@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    entries: int = 0
    bytes: int = 0


class AudioCache:
    """A byte-bounded LRU of encoded results; concurrent requests for one key share one synthesis."""

    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[Hashable, bytes] = OrderedDict()
        self._pending: dict[Hashable, asyncio.Future[bytes]] = {}
        self.stats = CacheStats()

    async def get_or_make(self, key: Hashable, make: Callable[[], Awaitable[bytes]]) -> bytes:
        while True:
            if key in self._items:
                self._items.move_to_end(key)
                self.stats.hits += 1
                return self._items[key]
            pending = self._pending.get(key)
            if pending is None:
                break
            try:
                data = await asyncio.shield(pending)
                self.stats.hits += 1
                return data
            except _Abandoned:
                continue  # the request that was making it went away: make it ourselves
        self.stats.misses += 1
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            data = await make()
        except BaseException as exc:
            future.set_exception(exc if isinstance(exc, Exception) else _Abandoned())
            future.exception()  # mark retrieved: waiters get it, nobody else must
            raise
        finally:
            self._pending.pop(key, None)
        future.set_result(data)
        self._store(key, data)
        return data

    def _store(self, key: Hashable, data: bytes) -> None:
        if len(data) > self.max_bytes:
            return
        self._items[key] = data
        self.stats.bytes += len(data)
        while self.stats.bytes > self.max_bytes:
            _, evicted = self._items.popitem(last=False)
            self.stats.bytes -= len(evicted)
        self.stats.entries = len(self._items)
