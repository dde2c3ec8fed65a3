"""Turn upstream audio into files editors drop on a timeline: 48 kHz WAV (16/24-bit) or MP3,
peak-normalised, with click-free edges and no dead air after a sound effect.

Everything here is synchronous and CPU-bound (and MP3 goes through an ffmpeg process via
pydub). Callers on the event loop must run it in an executor:

    processed = await loop.run_in_executor(None, functools.partial(process_for_editing, raw, ...))

This runs on every generation, so the sample math is vectorised with numpy: decoding, peak,
trim, fades and gain are a handful of passes over arrays instead of Python loops and audioop
calls, and numpy drops the GIL inside those passes, so the event loop's thread keeps running
while the executor works. (It also keeps this module off audioop, which Python 3.13 removed;
pydub, used for MP3 only, still imports it.)

Samples are float32 from decode to encode, as a (frames, channels) array where 1.0 is full
scale: every 8-, 16- and 24-bit input value is exact in float32 (32-bit sources keep 24
significant bits, all a 24-bit output can carry). Rounding to the output's integers happens
once, at the end, so a 24-bit file gets real 24-bit samples instead of a 16-bit signal padded
with zero bytes.
"""

from __future__ import annotations

import functools
import io
import math
import struct
import sys
from dataclasses import dataclass
from typing import Literal

import numpy as np

OUTPUT_SAMPLE_RATE = 48_000
FADE_IN_SECONDS = 0.005
FADE_OUT_SECONDS = 0.010
TRIM_THRESHOLD_DB = -50.0  # below the clip's own peak counts as silence
TRIM_WINDOW_SECONDS = 0.010
TRIM_KEEP_TAIL_SECONDS = 0.080
SILENCE_FLOOR_DBFS = -70.0  # a clip that never rises above this is treated as no audio at all
MP3_BITRATE = "192k"

_CONTENT_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg"}
_PCM_CODECS = {"pcm", "ulaw", "alaw"}
_FFMPEG_FORMATS = {"mp3": "mp3", "opus": "ogg", "ogg": "ogg", "flac": "flac", "aac": "aac", "m4a": "mp4"}
_WAVE_FORMAT_PCM = 1
_WAVE_FORMAT_IEEE_FLOAT = 3
_WAVE_FORMAT_EXTENSIBLE = 0xFFFE


class CorruptAudio(ValueError):
    """The input is empty, undecodable, or holds no audible signal: an upstream failure, not user error."""


@dataclass(frozen=True)
class ProcessedAudio:
    data: bytes
    duration_seconds: float
    sample_rate: int
    channels: int
    format: str  # "wav" or "mp3"
    content_type: str
    bit_depth: int | None  # None for mp3
    trimmed_seconds: float = 0.0  # trailing silence removed


@dataclass(frozen=True)
class _Pcm:
    samples: np.ndarray  # float32, shape (frames, channels), 1.0 = full scale; owned and writable
    rate: int

    @property
    def channels(self) -> int:
        return self.samples.shape[1]

    @property
    def frame_count(self) -> int:
        return self.samples.shape[0]


@dataclass(frozen=True)
class _WavLayout:
    tag: int
    channels: int
    rate: int
    bits: int
    payload: memoryview  # whole frames only


def process_for_editing(raw: bytes, *, kind: Literal["sfx", "voice"], loop: bool = False, headroom_db: float = -1.0,
                        bit_depth: Literal[16, 24] = 16, output: Literal["wav", "mp3"] = "wav",
                        source_format: str | None = None, length_seconds: float | None = None) -> ProcessedAudio:
    """Decode `raw`, then resample to 48 kHz, trim trailing silence (SFX that are not loops), fade
    the edges (not loops: their ends must join), peak-normalise to `headroom_db` dBFS and encode.

    `length_seconds` is a length the editor asked for: the result then has exactly that many
    frames (the upstream's few milliseconds too many are cut, too few padded with silence, or for a
    loop stretched so its ends still join) and no silence is trimmed.

    `source_format` is the ElevenLabs output format the bytes were requested in ("pcm_48000",
    "wav_48000", "mp3_44100_128", "ulaw_8000", ...). Raw PCM cannot be recognised from its bytes,
    so it needs it; containers (WAV, MP3, Ogg, FLAC) are recognised by their headers anyway.
    Raises CorruptAudio for empty, undecodable or silent input.
    """
    if kind not in ("sfx", "voice"):
        raise ValueError("kind must be 'sfx' or 'voice'")
    if bit_depth not in (16, 24):
        raise ValueError("bit_depth must be 16 or 24")
    if output not in _CONTENT_TYPES:
        raise ValueError("output must be 'wav' or 'mp3'")
    if not headroom_db <= 0:
        raise ValueError("headroom_db must be <= 0 dBFS")

    pcm = _resample(decode(raw, source_format), OUTPUT_SAMPLE_RATE)
    peak = _peak(pcm.samples)
    if peak == 0 or 20 * math.log10(peak) < SILENCE_FLOOR_DBFS:
        raise CorruptAudio("audio is silent")
    if length_seconds is not None and not length_seconds > 0:
        raise ValueError("length_seconds must be positive")
    trimmed = 0.0
    if length_seconds is not None:
        pcm = _fit_length(pcm, round(length_seconds * pcm.rate), loop=loop)
        peak = _peak(pcm.samples)
        if peak == 0:
            raise CorruptAudio("audio is silent")
    elif kind == "sfx" and not loop:
        before = pcm.frame_count
        pcm = _trim_trailing_silence(pcm, peak)
        trimmed = (before - pcm.frame_count) / pcm.rate
    if not loop:
        peak = _fade(pcm, FADE_IN_SECONDS, FADE_OUT_SECONDS, peak)
        if peak == 0:  # a clip of a single frame: the fade-out silenced it
            raise CorruptAudio("audio is silent")
    level = 10 ** (headroom_db / 20)
    gain = level / peak
    data = _mp3(pcm, gain, level) if output == "mp3" else _wav(pcm, gain, level, bit_depth)
    return ProcessedAudio(
        data=data, duration_seconds=pcm.frame_count / pcm.rate, sample_rate=pcm.rate, channels=pcm.channels,
        format=output, content_type=_CONTENT_TYPES[output], bit_depth=bit_depth if output == "wav" else None,
        trimmed_seconds=trimmed,
    )


def probe_wav(data: bytes) -> tuple[int, int, int, float]:
    """(sample_rate, bit_depth, channels, duration_seconds) of a PCM WAV; CorruptAudio if it is not one."""
    layout = _parse_wav(data)  # checks the header and the encoding without converting any sample
    frames = len(layout.payload) // (layout.bits // 8 * layout.channels)
    return layout.rate, layout.bits, layout.channels, frames / layout.rate


# --- decoding -----------------------------------------------------------------------------

def decode(raw: bytes, source_format: str | None = None) -> _Pcm:
    """`raw` as float32 samples at their own rate; CorruptAudio if it holds none."""
    if not raw:
        raise CorruptAudio("audio is empty")
    codec, rate = _parse_source_format(source_format)
    if raw[:4] == b"RIFF":
        return _wav_samples(_parse_wav(raw))
    if codec in _PCM_CODECS:
        return _decode_headerless(raw, codec, rate)
    if codec == "wav":
        raise CorruptAudio("expected a WAV file but found no RIFF header")
    return _decode_with_ffmpeg(raw, _FFMPEG_FORMATS.get(codec or ""))


def _parse_source_format(source_format: str | None) -> tuple[str | None, int | None]:
    if not source_format:
        return None, None
    parts = source_format.lower().split("_")
    rate = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
    return parts[0], rate


def _decode_headerless(raw: bytes, codec: str, rate: int | None) -> _Pcm:
    if rate is None:
        raise ValueError(f"source_format {codec!r} needs a sample rate, e.g. {codec}_48000")
    if _looks_like_text(raw):
        raise CorruptAudio("expected raw audio but received text")
    if codec == "pcm":
        if len(raw) % 2:
            raise CorruptAudio("raw 16-bit audio has an odd number of bytes (truncated)")
        return _Pcm(_int_to_float(raw, "<i2", 1), rate)
    table = _ULAW_TO_FLOAT if codec == "ulaw" else _ALAW_TO_FLOAT
    return _Pcm(table[np.frombuffer(raw, np.uint8)].reshape(-1, 1), rate)


def _looks_like_text(raw: bytes) -> bool:
    # An HTML, XML or JSON error page where audio was promised. Audio may look printable by
    # chance (a constant level), but not printable *and* opening like markup or JSON.
    head = raw[:64]
    printable = all(32 <= b < 127 or b in (9, 10, 13) for b in head)
    return printable and head.lstrip()[:1] in (b"<", b"{", b"[")


def _parse_wav(data: bytes) -> _WavLayout:
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise CorruptAudio("not a WAV file")
    view = memoryview(data)  # slices of it share the input's memory: the samples are not copied
    pos, fmt = 12, None
    while pos + 8 <= len(data):
        chunk_id = data[pos:pos + 4]
        (size,) = struct.unpack_from("<I", data, pos + 4)
        if chunk_id == b"fmt ":
            fmt = _parse_fmt(data[pos + 8:pos + 8 + size])
        elif chunk_id == b"data":
            if fmt is None:
                raise CorruptAudio("WAV data before its format chunk")
            return _wav_layout(view[pos + 8:], size, *fmt)
        pos += 8 + size + (size & 1)
    raise CorruptAudio("WAV file without audio data")


def _parse_fmt(body: bytes) -> tuple[int, int, int, int]:
    if len(body) < 16:
        raise CorruptAudio("WAV format chunk too short")
    tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
    if tag == _WAVE_FORMAT_EXTENSIBLE and len(body) >= 26:  # the real tag opens the sub-format GUID
        (tag,) = struct.unpack("<H", body[24:26])
    if channels < 1 or rate < 1:
        raise CorruptAudio("WAV format chunk has no channels or no rate")
    return tag, channels, rate, bits


def _wav_layout(rest: memoryview, size: int, tag: int, channels: int, rate: int, bits: int) -> _WavLayout:
    # Streamed WAVs declare an unknown (huge or zero) data size: take what is there.
    payload = rest[:size] if 0 < size <= len(rest) else rest
    is_float = tag == _WAVE_FORMAT_IEEE_FLOAT and bits == 32
    if not is_float and (tag != _WAVE_FORMAT_PCM or bits not in (8, 16, 24, 32)):
        raise CorruptAudio(f"unsupported WAV encoding (format {tag}, {bits}-bit)")
    frame_bytes = bits // 8 * channels
    payload = payload[: len(payload) // frame_bytes * frame_bytes]  # a truncated download keeps whole frames
    if not payload:
        raise CorruptAudio("WAV file holds no samples")
    return _WavLayout(tag, channels, rate, bits, payload)


def _wav_samples(wav: _WavLayout) -> _Pcm:
    if wav.tag == _WAVE_FORMAT_IEEE_FLOAT:
        samples = np.frombuffer(wav.payload, "<f4").astype(np.float32)  # a native, writable copy
        # Float WAVs may exceed full scale; clip like a converter to integers would. NaN has no
        # level at all: silence, not a full-scale click.
        np.nan_to_num(samples, copy=False, nan=0.0)
        np.clip(samples, -1.0, 1.0, out=samples)
        return _Pcm(samples.reshape(-1, wav.channels), wav.rate)
    if wav.bits == 8:  # 8-bit WAV is unsigned, centred on 128
        samples = np.frombuffer(wav.payload, np.uint8).astype(np.float32)
        samples -= 128
        samples *= 1 / 128
        return _Pcm(samples.reshape(-1, wav.channels), wav.rate)
    if wav.bits == 24:
        return _Pcm(_int24_to_float(wav.payload, wav.channels), wav.rate)
    return _Pcm(_int_to_float(wav.payload, f"<i{wav.bits // 8}", wav.channels), wav.rate)


def _int_to_float(data: bytes | memoryview, dtype: str, channels: int) -> np.ndarray:
    ints = np.frombuffer(data, dtype)
    # One pass: convert and scale to +-1.0 together.
    samples = np.multiply(ints, np.float32(1 / 2 ** (8 * ints.itemsize - 1)), dtype=np.float32)
    return samples.reshape(-1, channels)


def _int24_to_float(data: bytes | memoryview, channels: int) -> np.ndarray:
    count = len(data) // 3
    # Little-endian: an unsigned low 16 bits, then the signed high byte, every 3 bytes.
    low = np.ndarray((count,), "<u2", buffer=data, strides=(3,))
    high = np.ndarray((count,), np.int8, buffer=data, offset=2, strides=(3,))
    ints = high.astype(np.int32)
    ints <<= 16
    ints |= low
    return np.multiply(ints, np.float32(1 / 2**23), dtype=np.float32).reshape(-1, channels)


def _g711_tables() -> tuple[np.ndarray, np.ndarray]:
    """The 256 levels of mu-law and A-law bytes as floats (ITU-T G.711, as audioop decodes them)."""
    code = np.arange(256, dtype=np.int32)
    u = ~code & 0xFF
    magnitude = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    ulaw = np.where(u & 0x80, 0x84 - magnitude, magnitude - 0x84)
    a = code ^ 0x55
    segment = (a & 0x70) >> 4
    level = ((a & 0x0F) << 4) + np.where(segment == 0, 8, 0x108)
    level = np.where(segment > 1, level << np.maximum(segment - 1, 0), level)
    alaw = np.where(a & 0x80, level, -level)
    return (ulaw / 32768).astype(np.float32), (alaw / 32768).astype(np.float32)


_ULAW_TO_FLOAT, _ALAW_TO_FLOAT = _g711_tables()


def _decode_with_ffmpeg(raw: bytes, container: str | None) -> _Pcm:
    from pydub import AudioSegment

    try:
        segment = AudioSegment.from_file(io.BytesIO(raw), format=container)
    except Exception as exc:  # pydub raises CouldntDecodeError, IndexError, KeyError... on bad input
        raise CorruptAudio("undecodable audio") from exc
    if not segment.raw_data:
        raise CorruptAudio("decoded audio is empty")
    # pydub holds signed samples in the machine's byte order (8-bit ones are signed too).
    width, channels = segment.sample_width, segment.channels
    if width == 3:
        return _Pcm(_int24_to_float(segment.raw_data, channels), segment.frame_rate)
    if width not in (1, 2, 4):
        raise CorruptAudio(f"unsupported decoded sample width {width}")
    return _Pcm(_int_to_float(segment.raw_data, f"=i{width}", channels), segment.frame_rate)


# --- processing ---------------------------------------------------------------------------

def _peak(samples: np.ndarray) -> float:
    # Two reductions instead of abs().max(): no temporary array the size of the clip.
    return float(max(samples.max(), -samples.min())) if samples.size else 0.0


def _resample(pcm: _Pcm, rate: int) -> _Pcm:
    """Linear interpolation, sample-for-sample what audioop.ratecv did here before: output frame
    k sits at input position k * in_rate / out_rate, and the output ends at the last input frame."""
    if pcm.rate == rate:
        return pcm
    common = math.gcd(pcm.rate, rate)
    step_in, step_out = pcm.rate // common, rate // common
    total = pcm.frame_count
    count = (total - 1) * step_out // step_in + 1
    position = np.arange(count, dtype=np.int64) * step_in  # in 1/step_out-ths of an input frame: exact
    left = position // step_out
    weight = ((position - left * step_out) / step_out).astype(np.float32)[:, None]
    right = np.minimum(left + 1, total - 1)
    samples = pcm.samples[left]
    samples *= 1 - weight
    samples += pcm.samples[right] * weight
    return _Pcm(samples, rate)


def _fit_length(pcm: _Pcm, frames: int, *, loop: bool) -> _Pcm:
    """Exactly `frames` frames. A one-shot is cut, or padded with silence; a loop is resampled
    across its whole period instead, since either would put a gap or a jump where its ends meet."""
    total = pcm.frame_count
    if total == frames:
        return pcm
    if loop:
        # Output frame k reads input position k * total / frames; the last one interpolates
        # towards frame 0, which follows the loop's end when it repeats.
        position = np.arange(frames, dtype=np.float64) * (total / frames)
        left = position.astype(np.int64)
        weight = (position - left).astype(np.float32)[:, None]
        samples = pcm.samples[left]
        samples *= 1 - weight
        samples += pcm.samples[(left + 1) % total] * weight
        return _Pcm(samples, pcm.rate)
    if total > frames:
        return _Pcm(pcm.samples[:frames], pcm.rate)
    padded = np.zeros((frames, pcm.channels), np.float32)
    padded[:total] = pcm.samples
    return _Pcm(padded, pcm.rate)


def _trim_trailing_silence(pcm: _Pcm, peak: float) -> _Pcm:
    """Cut windows of TRIM_WINDOW_SECONDS, counted back from the end, in which no sample rises
    above TRIM_THRESHOLD_DB below the clip's peak, then give back TRIM_KEEP_TAIL_SECONDS."""
    threshold = peak * 10 ** (TRIM_THRESHOLD_DB / 20)
    total = pcm.frame_count
    window = max(1, round(TRIM_WINDOW_SECONDS * pcm.rate))
    last = _last_frame_above(pcm.samples, threshold)
    # The window holding the last loud frame is the first one, from the end, that is kept whole.
    end = total - (total - 1 - last) // window * window if last >= 0 else 0
    keep = min(total, end + round(TRIM_KEEP_TAIL_SECONDS * pcm.rate))
    return _Pcm(pcm.samples[:keep], pcm.rate)


def _last_frame_above(samples: np.ndarray, threshold: float) -> int:
    # Look back from the end in growing blocks: a sound effect usually ends within the first
    # one, so the whole clip is rarely scanned.
    flat = samples.reshape(-1)
    channels = samples.shape[1]
    stop, block = flat.size, 8192 * channels
    while stop > 0:
        start = max(0, stop - block)
        loud = np.flatnonzero(np.abs(flat[start:stop]) > threshold)
        if loud.size:
            return (start + int(loud[-1])) // channels
        stop, block = start, block * 2
    return -1


def _fade(pcm: _Pcm, fade_in: float, fade_out: float, peak: float) -> float:
    """Fade in place: frame i of the fade-in gets gain i/N, and frame i from the end of the
    fade-out gets i/N, so the very first and very last frames are 0; every channel of a frame
    alike. Returns the clip's peak after fading (`peak` is the one before)."""
    samples, total = pcm.samples, pcm.frame_count
    fade_in_frames = min(round(fade_in * pcm.rate), total // 2)
    fade_out_frames = min(round(fade_out * pcm.rate), total - fade_in_frames)
    head, tail = samples[:fade_in_frames], samples[total - fade_out_frames:]
    # Fades only turn samples down, and only at the edges: if the peak lies between them, it
    # stands, and the clip needs no second pass to measure it.
    peak_in_fades = max(_peak(head), _peak(tail))
    if fade_in_frames:
        head *= _ramp(fade_in_frames)[:, None]
    if fade_out_frames:
        tail *= _ramp(fade_out_frames)[::-1, None]
    return peak if peak_in_fades < peak else _peak(samples)


@functools.lru_cache(maxsize=16)
def _ramp(frames: int) -> np.ndarray:
    ramp = (np.arange(frames) / frames).astype(np.float32)
    ramp.flags.writeable = False  # shared between calls
    return ramp


# --- encoding -----------------------------------------------------------------------------

def _wav(pcm: _Pcm, gain: float, level: float, bits: int) -> bytes:
    # The 44-byte header the wave module writes for PCM, then the samples, quantised straight
    # into the file's buffer: no intermediate copy of the audio.
    frames, channels = pcm.samples.shape
    width = bits // 8
    size = frames * channels * width
    buf = bytearray(44 + size)
    struct.pack_into("<4sI4s4sIHHIIHH4sI", buf, 0, b"RIFF", 36 + size, b"WAVE", b"fmt ", 16, _WAVE_FORMAT_PCM,
                     channels, pcm.rate, pcm.rate * channels * width, channels * width, bits, b"data", size)
    _quantise(pcm.samples, gain, level, bits, buf, 44)
    return bytes(buf)


# Samples per block when quantising: the scratch arrays (and the block being worked on) stay
# in the CPU cache, and no temporary the size of the clip is allocated.
_BLOCK = 1 << 14


def _quantise(samples: np.ndarray, gain: float, level: float, bits: int, out: bytearray, offset: int) -> None:
    """Write samples * gain into `out` at `offset` as little-endian `bits`-bit integers,
    rounded to nearest. `level` is the peak that gain leads to (1.0 = full scale)."""
    flat = samples.reshape(-1)
    full = 2 ** (bits - 1)
    factor = gain * full
    # Only a peak at (or a rounding error from) full scale leaves the integer range: +1.0 has no
    # integer, and +32768 would wrap to -32768. Below it, skip the clipping pass.
    clip = level * full * (1 + 1e-6) >= full - 0.5
    # float32 is exact to far below a 16-bit LSB; for 24 bits the product needs float64's
    # mantissa to put the peak within half an LSB of the headroom.
    scaled_block = np.empty(min(_BLOCK, flat.size), np.float32 if bits == 16 else np.float64)
    if bits == 16:
        dest = np.frombuffer(out, "<i2", count=flat.size, offset=offset)
    else:
        ints_block = np.empty(scaled_block.size, np.int32)
    for start in range(0, flat.size, _BLOCK):
        block = flat[start:start + _BLOCK]
        scaled = scaled_block[:block.size]
        np.multiply(block, factor, out=scaled, dtype=scaled.dtype)
        np.rint(scaled, out=scaled)
        if clip:
            np.clip(scaled, -full, full - 1, out=scaled)
        # Whole numbers within range by now: the casts below are exact.
        if bits == 16:
            np.copyto(dest[start:start + block.size], scaled, casting="unsafe")
        else:
            ints = ints_block[:block.size]
            np.copyto(ints, scaled, casting="unsafe")
            _pack_int24(ints, out, offset + 3 * start)


def _pack_int24(ints: np.ndarray, out: bytearray, offset: int) -> None:
    # Little-endian 3-byte samples: the low 16 bits, then bits 16-23, every 3 bytes. Casting to
    # the narrower unsigned types keeps exactly those bits (numpy casts integers modulo 2**n),
    # and the '<u2' view writes them little-endian whatever the machine.
    count = ints.size
    low = np.ndarray((count,), "<u2", buffer=out, offset=offset, strides=(3,))
    high = np.ndarray((count,), np.uint8, buffer=out, offset=offset + 2, strides=(3,))
    np.copyto(low, ints, casting="unsafe")
    np.copyto(high, ints >> 16, casting="unsafe")


def _mp3(pcm: _Pcm, gain: float, level: float) -> bytes:
    from pydub import AudioSegment

    ints = bytearray(pcm.samples.size * 2)
    _quantise(pcm.samples, gain, level, 16, ints, 0)  # little-endian; pydub wants native order
    data = bytes(ints) if sys.byteorder == "little" else np.frombuffer(ints, "<i2").astype(">i2").tobytes()
    segment = AudioSegment(data=data, sample_width=2, frame_rate=pcm.rate, channels=pcm.channels)
    out = io.BytesIO()
    segment.export(out, format="mp3", bitrate=MP3_BITRATE)
    return out.getvalue()
