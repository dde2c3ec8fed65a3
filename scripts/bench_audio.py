#!/usr/bin/env python3
"""Audio post-processing benchmark: process_for_editing beside the same pipeline in pydub.

For sound-effect clips of 2, 10 and 30 seconds (48 kHz mono 16-bit WAV in: a decaying noisy
hit, then 15% near-silence to trim), and for 16- and 24-bit WAV out, it times, one call after
another on one thread:

  numpy   server.audio.process_for_editing(wav, kind="sfx", headroom_db=-1, bit_depth=...)
  pydub   the same steps with pydub's AudioSegment (how it is commonly done): from_file(wav),
          trailing silence found with silence.detect_leading_silence on the reversed clip
          (10 ms chunks, -50 dB below the peak, 80 ms tail kept), fade_in(5 ms),
          fade_out(10 ms), effects.normalize(headroom=1), export(format="wav"). pydub reads
          and writes WAV in-process, without ffmpeg. It cannot hold 24-bit samples (it widens
          them to 32 bits in a Python loop), so for 24-bit out it works at 32 bits
          (set_sample_width(4)) and the result is packed with audioop.lin2lin(..., 4, 3).

and prints per-call latency (p50, p95) and calls per second for both.

    .venv/bin/python scripts/bench_audio.py [--budget SECONDS_PER_MEASUREMENT]
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
import warnings
import wave
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # pydub imports audioop
    import audioop  # noqa: E402
    from pydub import AudioSegment, effects, silence  # noqa: E402

from server.audio.service import (  # noqa: E402
    FADE_IN_SECONDS, FADE_OUT_SECONDS, TRIM_KEEP_TAIL_SECONDS, TRIM_THRESHOLD_DB, TRIM_WINDOW_SECONDS,
    process_for_editing,
)

RATE = 48_000
HEADROOM_DB = -1.0


def sound_effect(seconds: float) -> bytes:
    frames = round(seconds * RATE)
    sounding = round(frames * 0.85)
    t = np.arange(sounding) / RATE
    rng = np.random.default_rng(7)
    hit = (0.6 * rng.standard_normal(sounding) + np.sin(2 * np.pi * 110 * t)) * np.exp(-t / (seconds / 5))
    signal = np.concatenate([hit, 1e-5 * rng.standard_normal(frames - sounding)])
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(np.round(np.clip(signal * 0.4, -1, 1) * 32767).astype("<i2").tobytes())
    return out.getvalue()


def with_numpy(raw: bytes, bit_depth: int) -> bytes:
    return process_for_editing(raw, kind="sfx", headroom_db=HEADROOM_DB, bit_depth=bit_depth).data


def with_pydub(raw: bytes, bit_depth: int) -> bytes:
    clip = AudioSegment.from_file(io.BytesIO(raw), format="wav")
    if bit_depth == 24:
        clip = clip.set_sample_width(4)
    silent_ms = silence.detect_leading_silence(clip.reverse(), silence_threshold=clip.max_dBFS + TRIM_THRESHOLD_DB,
                                               chunk_size=round(TRIM_WINDOW_SECONDS * 1000))
    clip = clip[:len(clip) - silent_ms + round(TRIM_KEEP_TAIL_SECONDS * 1000)]
    clip = clip.fade_in(round(FADE_IN_SECONDS * 1000)).fade_out(round(FADE_OUT_SECONDS * 1000))
    clip = effects.normalize(clip, headroom=-HEADROOM_DB)
    out = io.BytesIO()
    if bit_depth == 16:
        clip.export(out, format="wav")
    else:
        with wave.open(out, "wb") as w:
            w.setnchannels(clip.channels)
            w.setsampwidth(3)
            w.setframerate(clip.frame_rate)
            w.writeframes(audioop.lin2lin(clip.raw_data, 4, 3))
    return out.getvalue()


def measure(call: Callable[[], bytes], budget: float) -> tuple[float, float, float]:
    """(p50 ms, p95 ms, calls per second), calling back to back for about `budget` seconds."""
    call()  # warm-up
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < 10 or (time.perf_counter() - started < budget and len(times) < 5_000):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    p95 = statistics.quantiles(times, n=20)[-1]
    return statistics.median(times) * 1e3, p95 * 1e3, len(times) / sum(times)


def shape(data: bytes) -> tuple[int, float]:
    with wave.open(io.BytesIO(data)) as w:
        return w.getsampwidth() * 8, w.getnframes() / w.getframerate()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", type=float, default=1.0, help="seconds spent on each measurement (default 1)")
    args = parser.parse_args()

    print(f"{'clip':>5} {'out':>6} | {'numpy p50':>9} {'p95':>8} {'calls/s':>8} | "
          f"{'pydub p50':>9} {'p95':>8} {'calls/s':>8} | {'p50 speed-up':>12}")
    for seconds in (2, 10, 30):
        raw = sound_effect(seconds)
        for bit_depth in (16, 24):
            # Both must do the same work: the same bit depth, the same trimmed length to a 10 ms window.
            (ours_bits, ours_seconds), (their_bits, their_seconds) = (
                shape(with_numpy(raw, bit_depth)), shape(with_pydub(raw, bit_depth)))
            assert ours_bits == their_bits == bit_depth and abs(ours_seconds - their_seconds) <= 0.011
            ours = measure(lambda: with_numpy(raw, bit_depth), args.budget)
            theirs = measure(lambda: with_pydub(raw, bit_depth), args.budget)
            print(f"{seconds:>4}s {bit_depth:>3}-bit | {ours[0]:>6.2f} ms {ours[1]:>5.2f} ms {ours[2]:>8.0f} | "
                  f"{theirs[0]:>6.2f} ms {theirs[1]:>5.2f} ms {theirs[2]:>8.0f} | {theirs[0] / ours[0]:>11.1f}x")


if __name__ == "__main__":
    main()
