"""Post-processing of upstream audio into editor-ready files, on real generated signals."""

from __future__ import annotations

import array
import io
import math
import random
import struct
import wave

import pytest
from pydub import AudioSegment

from server.audio import CorruptAudio, probe_wav, process_for_editing
from server.audio.service import FADE_IN_SECONDS, FADE_OUT_SECONDS, TRIM_KEEP_TAIL_SECONDS


def sine(seconds: float, *, rate: int = 48_000, freq: float = 440.0, amplitude: float = 0.5) -> array.array:
    """Mono 16-bit samples of a sine wave."""
    return array.array("h", (round(amplitude * 32767 * math.sin(2 * math.pi * freq * i / rate))
                             for i in range(round(seconds * rate))))


def silence(seconds: float, rate: int = 48_000) -> array.array:
    return array.array("h", bytes(2 * round(seconds * rate)))


def wav(samples: array.array | bytes, *, rate: int = 48_000, width: int = 2, channels: int = 1) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(bytes(samples))
    return out.getvalue()


def samples_of(data: bytes) -> tuple[list[int], int]:
    """Decoded samples (as ints) and the sample width of a WAV."""
    with wave.open(io.BytesIO(data)) as w:
        width, frames = w.getsampwidth(), w.readframes(w.getnframes())
    return [int.from_bytes(frames[i:i + width], "little", signed=True) for i in range(0, len(frames), width)], width


def peak_dbfs(data: bytes) -> float:
    samples, width = samples_of(data)
    return 20 * math.log10(max(abs(s) for s in samples) / 2 ** (8 * width - 1))


def pcm(samples: array.array) -> bytes:
    return bytes(samples)


# --- normalisation and formats ------------------------------------------------------------

@pytest.mark.parametrize("headroom", [-1.0, -3.0, -0.3])
@pytest.mark.parametrize("bit_depth", [16, 24])
def test_peak_is_normalised_to_the_headroom_within_a_tenth_of_a_db(headroom, bit_depth):
    result = process_for_editing(pcm(sine(1.0, amplitude=0.2)), kind="voice", headroom_db=headroom,
                                 bit_depth=bit_depth, source_format="pcm_48000")
    assert abs(peak_dbfs(result.data) - headroom) < 0.1


def test_loud_input_is_turned_down_to_the_headroom_too():
    result = process_for_editing(pcm(sine(0.5, amplitude=1.0)), kind="sfx", headroom_db=-1.0, source_format="pcm_48000")
    assert abs(peak_dbfs(result.data) + 1.0) < 0.1


def test_output_is_a_48_khz_wav_with_the_measured_duration_and_metadata():
    result = process_for_editing(pcm(sine(1.25)), kind="voice", source_format="pcm_48000")
    assert probe_wav(result.data) == (48_000, 16, 1, 1.25)
    assert (result.sample_rate, result.channels, result.duration_seconds) == (48_000, 1, 1.25)
    assert (result.format, result.content_type, result.bit_depth) == ("wav", "audio/wav", 16)


def test_24_bit_output_carries_real_24_bit_samples_not_padded_16_bit():
    result = process_for_editing(pcm(sine(0.5, amplitude=0.3)), kind="voice", bit_depth=24, source_format="pcm_48000")
    rate, bits, channels, _ = probe_wav(result.data)
    assert (rate, bits, channels) == (48_000, 24, 1)
    samples, width = samples_of(result.data)
    assert width == 3
    # Gain applied at 32-bit precision fills the low byte that a 16-bit source would leave at zero.
    nonzero_low_bytes = sum(1 for s in samples if s & 0xFF)
    assert nonzero_low_bytes > 0.9 * len([s for s in samples if s])


def test_mp3_output_is_decodable_and_reports_the_pcm_duration():
    result = process_for_editing(pcm(sine(2.0)), kind="sfx", output="mp3", source_format="pcm_48000")
    assert (result.format, result.content_type, result.bit_depth) == ("mp3", "audio/mpeg", None)
    decoded = AudioSegment.from_file(io.BytesIO(result.data), format="mp3")
    assert decoded.frame_rate == 48_000
    assert abs(decoded.duration_seconds - result.duration_seconds) < 0.08


# --- edges: fades, loops, trimming --------------------------------------------------------

def test_non_loop_results_fade_in_and_out_at_the_cut_points():
    # A square-ish loud signal that starts and ends at full level: an audible click without fades.
    loud = array.array("h", [20000] * 48_000)
    result = process_for_editing(pcm(loud), kind="voice", source_format="pcm_48000")
    samples, _ = samples_of(result.data)
    fade_in, fade_out = round(FADE_IN_SECONDS * 48_000), round(FADE_OUT_SECONDS * 48_000)
    assert samples[0] == 0 and samples[-1] == 0
    assert samples[fade_in // 2] < samples[fade_in] * 0.6
    assert samples[-fade_out // 2] < samples[-fade_out - 1] * 0.6
    assert samples[fade_in + 10] == samples[len(samples) // 2]  # untouched between the fades


def test_loop_results_keep_their_exact_length_and_have_no_fades():
    source = sine(3.0, freq=100.0, amplitude=0.5)
    source[0] = source[-1] = 12000  # loud at both ends: a fade would change them
    result = process_for_editing(pcm(source), kind="sfx", loop=True, headroom_db=-1.0, source_format="pcm_48000")
    samples, _ = samples_of(result.data)
    assert len(samples) == len(source)
    assert result.duration_seconds == 3.0 and result.trimmed_seconds == 0
    gain = max(abs(s) for s in samples) / max(abs(s) for s in source)
    assert abs(samples[0] - 12000 * gain) <= 1 and abs(samples[-1] - 12000 * gain) <= 1


def test_loops_keep_trailing_quiet_parts_too():
    source = sine(1.0) + silence(1.0)
    result = process_for_editing(pcm(source), kind="sfx", loop=True, source_format="pcm_48000")
    assert result.duration_seconds == 2.0


def test_sound_effects_lose_trailing_silence_but_keep_a_short_tail():
    source = sine(1.0) + silence(2.0)
    result = process_for_editing(pcm(source), kind="sfx", source_format="pcm_48000")
    assert 1.0 < result.duration_seconds <= 1.0 + TRIM_KEEP_TAIL_SECONDS + 0.011
    assert abs(result.trimmed_seconds - (3.0 - result.duration_seconds)) < 1e-9


def test_a_quiet_decaying_tail_counts_as_sound_not_silence():
    tail = array.array("h", (round(0.5 * 32767 * math.exp(-i / 4800) * math.sin(i / 7)) for i in range(48_000)))
    source = sine(0.5) + tail
    result = process_for_editing(pcm(source), kind="sfx", source_format="pcm_48000")
    # -50 dB below the peak is reached after about 0.55 s of a 0.1 s time constant decay.
    assert 0.9 < result.duration_seconds <= 1.5


def test_voice_keeps_its_pauses_and_trailing_silence():
    source = sine(1.0) + silence(1.0)
    result = process_for_editing(pcm(source), kind="voice", source_format="pcm_48000")
    assert result.duration_seconds == 2.0


# --- input formats ------------------------------------------------------------------------

def test_mp3_input_is_decoded_and_converted_to_48_khz_wav():
    mp3 = io.BytesIO()
    AudioSegment(data=pcm(sine(2.0, rate=44_100)), sample_width=2, frame_rate=44_100, channels=1).export(
        mp3, format="mp3", bitrate="128k")
    result = process_for_editing(mp3.getvalue(), kind="sfx", loop=True, source_format="mp3_44100_128")
    rate, bits, channels, duration = probe_wav(result.data)
    assert (rate, bits, channels) == (48_000, 16, 1)
    assert abs(duration - 2.0) < 0.08
    assert abs(peak_dbfs(result.data) + 1.0) < 0.1


def test_wav_at_44_1_khz_is_resampled_to_48_khz_keeping_its_duration():
    result = process_for_editing(wav(sine(2.0, rate=44_100), rate=44_100), kind="voice", source_format="wav_44100")
    rate, _, _, duration = probe_wav(result.data)
    assert rate == 48_000 and abs(duration - 2.0) < 0.001


def test_raw_pcm_at_another_rate_is_resampled_by_its_declared_format():
    result = process_for_editing(pcm(sine(1.0, rate=24_000)), kind="voice", source_format="pcm_24000")
    assert result.sample_rate == 48_000 and abs(result.duration_seconds - 1.0) < 0.001


def test_24_bit_stereo_wav_input_keeps_both_channels():
    frames = b"".join(struct.pack("<i", round(0.4 * 2**31 * math.sin(i / 9)))[1:] * 2 for i in range(48_000))
    result = process_for_editing(wav(frames, width=3, channels=2), kind="voice", bit_depth=24)
    assert probe_wav(result.data)[:3] == (48_000, 24, 2)


def test_streamed_wav_with_an_unknown_length_header_is_read_to_its_end():
    data = bytearray(wav(sine(1.0)))
    data[40:44] = struct.pack("<I", 0xFFFFFFFF)  # data chunk size as a streaming encoder leaves it
    data[4:8] = struct.pack("<I", 0xFFFFFFFF)
    result = process_for_editing(bytes(data), kind="voice", source_format="wav_48000")
    assert result.duration_seconds == 1.0


def test_mu_law_telephony_audio_is_accepted():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop
    ulaw = audioop.lin2ulaw(pcm(sine(1.0, rate=8000)), 2)
    result = process_for_editing(ulaw, kind="voice", source_format="ulaw_8000")
    assert result.sample_rate == 48_000 and abs(result.duration_seconds - 1.0) < 0.001


# --- corrupt input ------------------------------------------------------------------------

@pytest.mark.parametrize("raw, source_format", [
    (b"", "pcm_48000"),
    (b"", "mp3_44100_128"),
    (b'{"detail": {"status": "system_busy", "message": "try later"}}', "pcm_48000"),
    (b"<html><body>Bad gateway</body></html>" * 10, "pcm_48000"),
    (b"<html><body>Bad gateway</body></html>" * 10, "wav_48000"),
    (b"<html><body>Bad gateway</body></html>" * 10, "mp3_44100_128"),
    (bytes(random.Random(7).randbytes(4096)), "mp3_44100_128"),
    (b"\x01\x02\x03", "pcm_48000"),  # odd length: a truncated sample
    (b"RIFF\x10\x00\x00\x00WAVEjunk", "wav_48000"),  # no format, no data
])
def test_corrupt_or_empty_input_raises_corrupt_audio(raw, source_format):
    with pytest.raises(CorruptAudio):
        process_for_editing(raw, kind="sfx", source_format=source_format)


def test_silent_only_input_raises_corrupt_audio():
    with pytest.raises(CorruptAudio, match="silent"):
        process_for_editing(pcm(silence(2.0)), kind="sfx", source_format="pcm_48000")
    with pytest.raises(CorruptAudio, match="silent"):
        process_for_editing(wav(silence(1.0)), kind="voice")


def test_truncated_wav_keeps_whatever_whole_frames_arrived():
    data = wav(sine(1.0))[: 44 + 48_000 + 1]  # half a second plus a stray byte
    result = process_for_editing(data, kind="voice", source_format="wav_48000")
    assert result.duration_seconds == 0.5


def test_probe_wav_describes_wavs_and_rejects_anything_else():
    assert probe_wav(wav(sine(0.5, rate=22_050), rate=22_050)) == (22_050, 16, 1, 0.5)
    with pytest.raises(CorruptAudio):
        probe_wav(b"ID3\x04" + bytes(100))


def test_bad_arguments_are_programming_errors_not_corrupt_audio():
    source = pcm(sine(0.5))
    with pytest.raises(ValueError):
        process_for_editing(source, kind="music", source_format="pcm_48000")
    with pytest.raises(ValueError):
        process_for_editing(source, kind="sfx", bit_depth=32, source_format="pcm_48000")
    with pytest.raises(ValueError):
        process_for_editing(source, kind="sfx", headroom_db=2.0, source_format="pcm_48000")
    with pytest.raises(ValueError, match="sample rate"):
        process_for_editing(source, kind="sfx", source_format="pcm")
