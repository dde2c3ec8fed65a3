"""Post-processing of upstream audio into editor-ready files, on real generated signals."""

from __future__ import annotations

import array
import io
import math
import random
import struct
import warnings
import wave

import numpy as np
import pytest
from pydub import AudioSegment

with warnings.catch_warnings():
    # The reference our own decoding is checked against (pydub needs it as well); on Python
    # 3.13+ the audioop-lts package provides it.
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

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


@pytest.mark.parametrize("upstream_seconds", [4.92, 5.0, 5.03])
def test_a_named_length_is_delivered_to_the_sample_and_its_quiet_end_kept(upstream_seconds):
    """The editor asked for 5 s: exactly 240,000 frames, however long the upstream's take was and
    however quiet its end (trimming is for automatic lengths only)."""
    source = sine(1.0) + silence(upstream_seconds - 1.0)
    for output in ("wav", "mp3"):
        result = process_for_editing(pcm(source), kind="sfx", source_format="pcm_48000", length_seconds=5, output=output)
        assert result.duration_seconds == 5.0 and result.trimmed_seconds == 0
    result = process_for_editing(pcm(source), kind="sfx", source_format="pcm_48000", length_seconds=5)
    samples, _ = samples_of(result.data)
    assert len(samples) == 5 * 48_000
    assert samples[-1] == 0


def test_a_named_length_from_a_44_1_khz_upstream_is_exact_at_48_khz():
    source = sine(3.0, rate=44_100)
    result = process_for_editing(pcm(source), kind="sfx", source_format="pcm_44100", length_seconds=3)
    assert len(samples_of(result.data)[0]) == 3 * 48_000


def test_a_loop_of_a_named_length_is_stretched_over_its_period_so_its_ends_still_join():
    # 2.99 s holding whole cycles of 100 Hz at that length: asked for 3 s, it must not get 10 ms of
    # silence (a gap at every repeat) nor be cut (a jump), but cover the same cycles in 144,000 frames.
    frames = round(2.99 * 48_000)
    source = array.array("h", (round(16000 * math.sin(2 * math.pi * 299 * i / frames)) for i in range(frames)))
    result = process_for_editing(pcm(source), kind="sfx", loop=True, source_format="pcm_48000", length_seconds=3)
    samples, _ = samples_of(result.data)
    assert len(samples) == 3 * 48_000
    steps = [abs(b - a) for a, b in zip(samples, samples[1:])]
    seam = abs(samples[0] - samples[-1])  # the step from the loop's end back to its start
    assert seam <= max(steps) * 1.01
    last_cycle = samples[-480:]  # 10 ms: one cycle of 100 Hz, at full level, not padding
    assert max(abs(s) for s in last_cycle) > 0.9 * max(abs(s) for s in samples)


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


# --- sample-exact behaviour (numpy processing) ----------------------------------------------

HEADROOM = -1.0
LEVEL = 10 ** (HEADROOM / 20)
FADE_IN, FADE_OUT = round(FADE_IN_SECONDS * 48_000), round(FADE_OUT_SECONDS * 48_000)


def frames_of(data: bytes) -> np.ndarray:
    """A WAV's samples as int64, shape (frames, channels), decoded independently of the service."""
    with wave.open(io.BytesIO(data)) as w:
        width, channels, raw = w.getsampwidth(), w.getnchannels(), w.readframes(w.getnframes())
    if width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int64)
        ints = b[:, 0] | b[:, 1] << 8 | b[:, 2] << 16
        ints = np.where(ints >= 2**23, ints - 2**24, ints)
    else:
        ints = np.frombuffer(raw, f"<i{width}").astype(np.int64)
    return ints.reshape(-1, channels)


def float_wav(samples: np.ndarray, *, rate: int = 48_000, extensible: bool = False) -> bytes:
    """A 32-bit float WAV (format 3, or WAVE_FORMAT_EXTENSIBLE with the float sub-format)."""
    channels = samples.shape[1] if samples.ndim == 2 else 1
    return wav_with_header(samples.astype("<f4").tobytes(), tag=3, bits=32, channels=channels, rate=rate,
                           extensible=extensible)


def wav_with_header(payload: bytes, *, tag: int, bits: int, channels: int, rate: int = 48_000,
                    extensible: bool = False) -> bytes:
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", 0xFFFE if extensible else tag, channels, rate, rate * block, block, bits)
    if extensible:  # cbSize, valid bits, channel mask, then the sub-format GUID opening with the real tag
        fmt += struct.pack("<HHI", 22, bits, 0) + struct.pack("<H", tag) + bytes.fromhex("000000001000800000aa00389b71")
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", len(body)) + body


def int16(values) -> bytes:
    return np.asarray(values, dtype="<i2").tobytes()


def test_fade_gain_is_i_over_n_from_zero_on_the_first_frame_to_zero_on_the_last():
    source = np.full(48_000, 16_000)
    out = frames_of(process_for_editing(int16(source), kind="voice", headroom_db=HEADROOM,
                                        source_format="pcm_48000").data)[:, 0]
    full = LEVEL * 32768  # the constant level after normalisation
    assert out[0] == 0 and out[-1] == 0
    fade_in = np.round(full * np.arange(FADE_IN) / FADE_IN)
    fade_out = np.round(full * np.arange(FADE_OUT) / FADE_OUT)[::-1]  # i/N for frame i from the end
    assert np.abs(out[:FADE_IN] - fade_in).max() <= 1
    assert np.abs(out[-FADE_OUT:] - fade_out).max() <= 1
    assert out[1] > 0 and out[-2] > 0  # only the edge frames reach 0
    assert (out[FADE_IN:-FADE_OUT] == round(full)).all()


@pytest.mark.parametrize("bit_depth", [16, 24])
@pytest.mark.parametrize("headroom", [-1.0, -6.0, -0.1, 0.0])
def test_output_peak_equals_the_headroom_within_one_lsb(bit_depth, headroom):
    source = np.round(9000 * np.sin(np.arange(48_000) / 5.3)).astype(np.int64)
    source[20_000] = 11_000  # the peak, a positive one, between the fades
    out = frames_of(process_for_editing(int16(source), kind="voice", headroom_db=headroom, bit_depth=bit_depth,
                                        source_format="pcm_48000").data)
    full = 2 ** (bit_depth - 1)
    assert abs(np.abs(out).max() - 10 ** (headroom / 20) * full) <= 1
    # At 0 dBFS the positive peak is clipped to the largest integer, never wrapped to the negative end.
    assert out[20_000, 0] == np.abs(out).max() and out.max() <= full - 1


def test_24_bit_output_is_computed_at_24_bit_resolution_not_padded_from_16():
    source = np.round(7000 * np.sin(np.arange(24_000) / 3.1)).astype(np.int64)
    out = frames_of(process_for_editing(int16(source), kind="sfx", loop=True, headroom_db=HEADROOM, bit_depth=24,
                                        source_format="pcm_48000").data)[:, 0]
    exact = source * (LEVEL * 2**23 / np.abs(source).max())
    assert np.abs(out - exact).max() <= 1  # a 16-bit result shifted left 8 bits is up to 128 off
    assert np.count_nonzero(out & 0xFF) > 0.9 * np.count_nonzero(out)


def test_stereo_is_faded_per_frame_both_channels_alike():
    source = np.empty((24_000, 2), dtype=np.int64)
    source[:, 0], source[:, 1] = 12_000, -6_000
    out = frames_of(process_for_editing(wav(int16(source.reshape(-1)), channels=2), kind="voice",
                                        headroom_db=HEADROOM).data)
    assert out.shape == (24_000, 2)
    assert (out[0] == 0).all() and (out[-1] == 0).all()
    # Right is minus half of left in every frame: the same gain for both channels of a frame.
    assert np.abs(out[:, 1] * -2 - out[:, 0]).max() <= 2
    assert out[1, 0] > 0 and out[1, 1] < 0 and out[-2, 0] > 0 and out[-2, 1] < 0


def test_stereo_trim_keeps_a_frame_while_either_channel_is_sounding():
    frames = 96_000
    left, right = np.zeros(frames), np.zeros(frames)
    left[:24_000] = 0.5 * np.sin(np.arange(24_000) / 4)
    right[:48_000] = 0.5 * np.sin(np.arange(48_000) / 6)  # sounds 0.5 s longer, on the right only
    source = np.round(np.column_stack([left, right]) * 32767).astype(np.int64)
    result = process_for_editing(wav(int16(source.reshape(-1)), channels=2), kind="sfx", headroom_db=HEADROOM)
    out = frames_of(result.data)
    assert 1.0 < result.duration_seconds <= 1.0 + TRIM_KEEP_TAIL_SECONDS + 0.011
    # The channels stay in their places: left is silent after 0.5 s, right is not.
    assert (out[24_000:, 0] == 0).all()
    assert np.abs(out[24_000:47_000, 1]).max() > 20_000


def test_trim_windows_are_counted_back_from_the_end_and_the_threshold_is_relative_to_the_peak():
    total, last_loud = 96_123, 30_000  # not a whole number of windows
    source = np.zeros(total, dtype=np.int64)
    source[1_000:1_100] = 20_000  # the peak
    source[last_loud] = round(20_000 * 10 ** (-49 / 20))  # above -50 dB below the peak: sound
    source[last_loud + 2_000] = round(20_000 * 10 ** (-51 / 20))  # below: silence
    result = process_for_editing(int16(source), kind="sfx", headroom_db=HEADROOM, source_format="pcm_48000")
    window, tail = 480, round(TRIM_KEEP_TAIL_SECONDS * 48_000)
    end = total - (total - 1 - last_loud) // window * window  # 30,363; windows from the start would end at 30,240
    assert result.duration_seconds == (end + tail) / 48_000
    assert result.trimmed_seconds == (total - end - tail) / 48_000


def test_a_clip_that_peaks_inside_the_fade_out_is_normalised_by_its_level_after_fading():
    # A crescendo whose loudest sample the fade-out turns down: the level must be measured after fading.
    ramp = np.linspace(0.05, 0.9, 48_000) * np.sin(np.arange(48_000) / 2.5)
    source = np.round(ramp * 32767).astype(np.int64)
    source[-100] = 32_000  # inside the last 10 ms, where the fade-out gain is 99/480
    gains = np.ones(48_000)
    gains[:FADE_IN] = np.arange(FADE_IN) / FADE_IN
    gains[-FADE_OUT:] = np.arange(FADE_OUT)[::-1] / FADE_OUT
    faded = source * gains
    expected = faded * (LEVEL * 32768 / np.abs(faded).max())
    for kind in ("sfx", "voice"):
        out = frames_of(process_for_editing(int16(source), kind=kind, headroom_db=HEADROOM,
                                            source_format="pcm_48000").data)[:, 0]
        assert len(out) == 48_000  # loud to the end: nothing trimmed
        assert np.abs(out - expected).max() <= 1


def test_float_wav_beyond_full_scale_is_clipped_before_normalising_and_nan_is_silence():
    signal = 2.0 * np.sin(np.arange(48_000) / 20)  # twice full scale
    signal[30_000] = np.nan
    out = frames_of(process_for_editing(float_wav(signal), kind="sfx", loop=True, headroom_db=HEADROOM).data)[:, 0]
    expected = np.clip(np.nan_to_num(signal), -1, 1) * LEVEL * 32768
    assert np.abs(out - expected).max() <= 1
    assert np.count_nonzero(np.abs(out) == np.abs(out).max()) > 10_000  # flat tops: clipped, not scaled down
    assert out[30_000] == 0


@pytest.mark.parametrize("bits, tag, extensible", [
    (8, 1, False), (16, 1, False), (24, 1, False), (32, 1, False), (32, 3, False), (24, 1, True), (32, 3, True),
])
def test_every_supported_wav_encoding_decodes_to_the_same_signal(bits, tag, extensible):
    signal = 0.6 * np.sin(np.arange(24_000) / 7.7)
    signal = np.column_stack([signal, -0.5 * signal])
    if tag == 3:
        stored = signal.astype("<f4")
        payload = stored.tobytes()
    elif bits == 8:  # unsigned, centred on 128
        stored = np.round(signal * 127)
        payload = (stored + 128).astype(np.uint8).tobytes()
    else:
        stored = np.round(signal * (2 ** (bits - 1) - 1))
        ints = stored.astype("<i4" if bits == 24 else f"<i{bits // 8}")
        payload = ints.view(np.uint8).reshape(-1, 4)[:, :3].tobytes() if bits == 24 else ints.tobytes()
    data = wav_with_header(payload, tag=tag, bits=bits, channels=2, extensible=extensible)
    assert probe_wav(data) == (48_000, bits, 2, 0.5)
    out = frames_of(process_for_editing(data, kind="voice", loop=True, headroom_db=HEADROOM, bit_depth=24).data)
    expected = stored / np.abs(stored).max() * LEVEL * 2**23
    # Samples are float32 in between: exact for up to 24-bit integers; 32-bit ones keep 24 bits.
    assert np.abs(out - expected).max() <= (1.5 if bits == 32 and tag == 1 else 1)


@pytest.mark.parametrize("codec", ["ulaw", "alaw"])
def test_g711_decoding_matches_the_standard_tables(codec):
    every_code = bytes(range(256)) * 4
    out = frames_of(process_for_editing(every_code, kind="voice", loop=True, headroom_db=HEADROOM,
                                        source_format=f"{codec}_48000").data)[:, 0]
    linear = np.frombuffer((audioop.ulaw2lin if codec == "ulaw" else audioop.alaw2lin)(every_code, 2), "<i2")
    assert np.abs(out - linear * (LEVEL * 32768 / np.abs(linear).max())).max() <= 1


@pytest.mark.parametrize("rate", [8_000, 22_050, 44_100, 96_000])
def test_resampling_is_the_linear_interpolation_audioop_ratecv_did(rate):
    source = int16(np.round(12_000 * np.sin(np.arange(rate // 2) / 3.3) + 300 * np.cos(np.arange(rate // 2))))
    out = frames_of(process_for_editing(source, kind="voice", loop=True, headroom_db=HEADROOM,
                                        source_format=f"pcm_{rate}").data)[:, 0]
    # audioop truncates its results to integers: at 32 bits that is far below a 16-bit LSB.
    wide = audioop.lin2lin(source, 2, 4)
    reference = np.frombuffer(audioop.ratecv(wide, 4, 1, rate, 48_000, None)[0], "<i4") / 65536
    assert len(out) == len(reference)
    assert np.abs(out - reference * (LEVEL * 32768 / np.abs(reference).max())).max() <= 1


def test_wav_header_is_the_one_the_wave_module_writes():
    for bit_depth, channels in ((16, 1), (24, 2)):
        source = np.round(9000 * np.sin(np.arange(4_801 * channels) / 9)).astype(np.int64)
        data = process_for_editing(wav(int16(source), channels=channels), kind="voice", bit_depth=bit_depth).data
        with wave.open(io.BytesIO(data)) as w:
            frames = w.readframes(w.getnframes())
        assert data[:44] == wav(frames, width=bit_depth // 8, channels=channels)[:44]
        assert len(data) == 44 + 4_801 * channels * bit_depth // 8
