"""Turn upstream audio into files editors drop on a timeline: 48 kHz WAV (16/24-bit) or MP3,
peak-normalised, with click-free edges and no dead air after a sound effect.

Everything here is synchronous and CPU-bound (and MP3 goes through an ffmpeg process via
pydub). Callers on the event loop must run it in an executor:

    processed = await loop.run_in_executor(None, functools.partial(process_for_editing, raw, ...))

Internally samples are 32-bit integers, so gain and fades computed once land in a real
24-bit output instead of a 16-bit signal padded with zero bytes.
"""

from __future__ import annotations

import array
import io
import math
import struct
import sys
import warnings
import wave
from dataclasses import dataclass
from typing import Literal

with warnings.catch_warnings():
    # audioop is what pydub itself computes with; it is part of the standard library on 3.11.
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

OUTPUT_SAMPLE_RATE = 48_000
FADE_IN_SECONDS = 0.005
FADE_OUT_SECONDS = 0.010
TRIM_THRESHOLD_DB = -50.0  # below the clip's own peak counts as silence
TRIM_WINDOW_SECONDS = 0.010
TRIM_KEEP_TAIL_SECONDS = 0.080
SILENCE_FLOOR_DBFS = -70.0  # a clip that never rises above this is treated as no audio at all
MP3_BITRATE = "192k"

_WORK_WIDTH = 4
_FULL_SCALE = 2**31 - 1
_CONTENT_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg"}
_PCM_CODECS = {"pcm", "ulaw", "alaw"}
_FFMPEG_FORMATS = {"mp3": "mp3", "opus": "ogg", "ogg": "ogg", "flac": "flac", "aac": "aac", "m4a": "mp4"}


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
    frames: bytes  # native-endian signed integers of `width` bytes, interleaved channels
    width: int
    channels: int
    rate: int

    @property
    def frame_count(self) -> int:
        return len(self.frames) // (self.width * self.channels)


def process_for_editing(raw: bytes, *, kind: Literal["sfx", "voice"], loop: bool = False, headroom_db: float = -1.0,
                        bit_depth: Literal[16, 24] = 16, output: Literal["wav", "mp3"] = "wav",
                        source_format: str | None = None) -> ProcessedAudio:
    """Decode `raw`, then resample to 48 kHz, trim trailing silence (SFX that are not loops), fade
    the edges (not loops: their ends must join), peak-normalise to `headroom_db` dBFS and encode.

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

    pcm = _to_work_width(decode(raw, source_format))
    pcm = _resample(pcm, OUTPUT_SAMPLE_RATE)
    peak = audioop.max(pcm.frames, pcm.width)
    if peak == 0 or _dbfs(peak) < SILENCE_FLOOR_DBFS:
        raise CorruptAudio("audio is silent")
    trimmed = 0.0
    if kind == "sfx" and not loop:
        before = pcm.frame_count
        pcm = _trim_trailing_silence(pcm, peak)
        trimmed = (before - pcm.frame_count) / pcm.rate
    if not loop:
        pcm = _fade(pcm, FADE_IN_SECONDS, FADE_OUT_SECONDS)
    pcm = _normalise(pcm, headroom_db)
    data = _encode(pcm, output, bit_depth)
    return ProcessedAudio(
        data=data, duration_seconds=pcm.frame_count / pcm.rate, sample_rate=pcm.rate, channels=pcm.channels,
        format=output, content_type=_CONTENT_TYPES[output], bit_depth=bit_depth if output == "wav" else None,
        trimmed_seconds=trimmed,
    )


def probe_wav(data: bytes) -> tuple[int, int, int, float]:
    """(sample_rate, bit_depth, channels, duration_seconds) of a PCM WAV; CorruptAudio if it is not one."""
    pcm = _parse_wav(data)
    return pcm.rate, pcm.width * 8, pcm.channels, pcm.frame_count / pcm.rate


# --- decoding -----------------------------------------------------------------------------

def decode(raw: bytes, source_format: str | None = None) -> _Pcm:
    if not raw:
        raise CorruptAudio("audio is empty")
    codec, rate = _parse_source_format(source_format)
    if raw[:4] == b"RIFF":
        return _parse_wav(raw)
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
        return _Pcm(_from_little_endian(raw, 2), 2, 1, rate)
    to_linear = audioop.ulaw2lin if codec == "ulaw" else audioop.alaw2lin
    return _Pcm(to_linear(raw, 2), 2, 1, rate)


def _looks_like_text(raw: bytes) -> bool:
    # An HTML, XML or JSON error page where audio was promised. Audio may look printable by
    # chance (a constant level), but not printable *and* opening like markup or JSON.
    head = raw[:64]
    printable = all(32 <= b < 127 or b in (9, 10, 13) for b in head)
    return printable and head.lstrip()[:1] in (b"<", b"{", b"[")


def _parse_wav(data: bytes) -> _Pcm:
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise CorruptAudio("not a WAV file")
    pos, fmt = 12, None
    while pos + 8 <= len(data):
        chunk_id = data[pos:pos + 4]
        (size,) = struct.unpack("<I", data[pos + 4:pos + 8])
        body = data[pos + 8:pos + 8 + size]
        if chunk_id == b"fmt ":
            fmt = _parse_fmt(body)
        elif chunk_id == b"data":
            if fmt is None:
                raise CorruptAudio("WAV data before its format chunk")
            return _wav_frames(data[pos + 8:], size, *fmt)
        pos += 8 + size + (size & 1)
    raise CorruptAudio("WAV file without audio data")


def _parse_fmt(body: bytes) -> tuple[int, int, int, int]:
    if len(body) < 16:
        raise CorruptAudio("WAV format chunk too short")
    tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
    if tag == 0xFFFE and len(body) >= 26:  # WAVE_FORMAT_EXTENSIBLE: the real tag opens the sub-format GUID
        (tag,) = struct.unpack("<H", body[24:26])
    if channels < 1 or rate < 1:
        raise CorruptAudio("WAV format chunk has no channels or no rate")
    return tag, channels, rate, bits


def _wav_frames(rest: bytes, size: int, tag: int, channels: int, rate: int, bits: int) -> _Pcm:
    # Streamed WAVs declare an unknown (huge or zero) data size: take what is there.
    payload = rest[:size] if 0 < size <= len(rest) else rest
    if tag == 3 and bits == 32:
        return _float_frames(payload, channels, rate)
    if tag != 1 or bits not in (8, 16, 24, 32):
        raise CorruptAudio(f"unsupported WAV encoding (format {tag}, {bits}-bit)")
    width = bits // 8
    payload = payload[: len(payload) // (width * channels) * (width * channels)]
    if not payload:
        raise CorruptAudio("WAV file holds no samples")
    if width == 1:  # 8-bit WAV is unsigned
        return _Pcm(audioop.bias(payload, 1, -128), 1, channels, rate)
    return _Pcm(_from_little_endian(payload, width), width, channels, rate)


def _float_frames(payload: bytes, channels: int, rate: int) -> _Pcm:
    samples = array.array("f")
    samples.frombytes(payload[: len(payload) // 4 * 4])
    if sys.byteorder == "big":
        samples.byteswap()
    if not samples:
        raise CorruptAudio("WAV file holds no samples")
    ints = array.array("i", (int(max(-1.0, min(1.0, s)) * _FULL_SCALE) for s in samples))
    return _Pcm(ints.tobytes(), 4, channels, rate)


def _decode_with_ffmpeg(raw: bytes, container: str | None) -> _Pcm:
    from pydub import AudioSegment

    try:
        segment = AudioSegment.from_file(io.BytesIO(raw), format=container)
    except Exception as exc:  # pydub raises CouldntDecodeError, IndexError, KeyError... on bad input
        raise CorruptAudio("undecodable audio") from exc
    if not segment.raw_data:
        raise CorruptAudio("decoded audio is empty")
    return _Pcm(segment.raw_data, segment.sample_width, segment.channels, segment.frame_rate)


def _from_little_endian(data: bytes, width: int) -> bytes:
    return data if sys.byteorder == "little" else audioop.byteswap(data, width)


# --- processing ---------------------------------------------------------------------------

def _to_work_width(pcm: _Pcm) -> _Pcm:
    if pcm.width == _WORK_WIDTH:
        return pcm
    return _Pcm(audioop.lin2lin(pcm.frames, pcm.width, _WORK_WIDTH), _WORK_WIDTH, pcm.channels, pcm.rate)


def _resample(pcm: _Pcm, rate: int) -> _Pcm:
    if pcm.rate == rate:
        return pcm
    frames, _ = audioop.ratecv(pcm.frames, pcm.width, pcm.channels, pcm.rate, rate, None)
    return _Pcm(frames, pcm.width, pcm.channels, rate)


def _dbfs(peak: int) -> float:
    return 20 * math.log10(max(peak, 1) / _FULL_SCALE)


def _trim_trailing_silence(pcm: _Pcm, peak: int) -> _Pcm:
    threshold = peak * 10 ** (TRIM_THRESHOLD_DB / 20)
    frame_bytes = pcm.width * pcm.channels
    window = max(1, round(TRIM_WINDOW_SECONDS * pcm.rate)) * frame_bytes
    end = len(pcm.frames)
    while end > 0:
        start = max(0, end - window)
        if audioop.max(pcm.frames[start:end], pcm.width) > threshold:
            break
        end = start
    keep = min(len(pcm.frames), end + round(TRIM_KEEP_TAIL_SECONDS * pcm.rate) * frame_bytes)
    return _Pcm(pcm.frames[:keep], pcm.width, pcm.channels, pcm.rate)


def _fade(pcm: _Pcm, fade_in: float, fade_out: float) -> _Pcm:
    samples = array.array("i")
    samples.frombytes(pcm.frames)
    total = pcm.frame_count
    fade_in_frames = min(round(fade_in * pcm.rate), total // 2)
    fade_out_frames = min(round(fade_out * pcm.rate), total - fade_in_frames)
    ch = pcm.channels
    for i in range(fade_in_frames):
        gain = i / fade_in_frames
        for c in range(ch):
            samples[i * ch + c] = int(samples[i * ch + c] * gain)
    for i in range(fade_out_frames):
        gain = i / fade_out_frames  # 0 on the very last frame
        frame = total - 1 - i
        for c in range(ch):
            samples[frame * ch + c] = int(samples[frame * ch + c] * gain)
    return _Pcm(samples.tobytes(), pcm.width, pcm.channels, pcm.rate)


def _normalise(pcm: _Pcm, headroom_db: float) -> _Pcm:
    peak = audioop.max(pcm.frames, pcm.width)
    if peak == 0:
        raise CorruptAudio("audio is silent")
    gain = _FULL_SCALE * 10 ** (headroom_db / 20) / peak
    return _Pcm(audioop.mul(pcm.frames, pcm.width, gain), pcm.width, pcm.channels, pcm.rate)


# --- encoding -----------------------------------------------------------------------------

def _encode(pcm: _Pcm, output: str, bit_depth: int) -> bytes:
    if output == "mp3":
        return _mp3(pcm)
    width = bit_depth // 8
    frames = audioop.lin2lin(pcm.frames, pcm.width, width)  # the wave module writes little-endian itself
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(pcm.channels)
        w.setsampwidth(width)
        w.setframerate(pcm.rate)
        w.writeframes(frames)
    return out.getvalue()


def _mp3(pcm: _Pcm) -> bytes:
    from pydub import AudioSegment

    segment = AudioSegment(data=audioop.lin2lin(pcm.frames, pcm.width, 2), sample_width=2,
                           frame_rate=pcm.rate, channels=pcm.channels)
    out = io.BytesIO()
    segment.export(out, format="mp3", bitrate=MP3_BITRATE)
    return out.getvalue()
