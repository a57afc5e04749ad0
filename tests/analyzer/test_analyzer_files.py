"""bytes inputs: every file kind from real buffers, header facts, corrupt and absurd headers."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
from analyzer_samples import flac_bytes, mp3_frame, npy_bytes, samples, wav_bytes

import fastroute as fr

SAMPLES = samples()


@pytest.mark.parametrize("name", SAMPLES)
def test_file_kind_mime_modality_and_header_facts(name):
    sample = SAMPLES[name]
    analysis = fr.analyze(sample.data)
    assert (analysis.mime, analysis.modality) == (sample.mime, sample.modality)
    assert analysis["mime"] == fr.MIMES.index(sample.mime)
    assert analysis["source"] == fr.SOURCES.index("bytes")
    assert analysis["size_bytes"] == len(sample.data)
    for fact in ("height", "width", "channels", "sample_rate", "duration_s"):
        expected = getattr(sample, fact)
        if expected is None and not (name == "npy" and fact == "channels"):
            assert math.isnan(analysis[fact]), fact
        elif expected is not None:
            assert analysis[fact] == pytest.approx(expected), fact
    if sample.height:
        assert analysis["aspect_ratio"] == pytest.approx(sample.width / sample.height)
    assert 0.0 <= analysis["byte_entropy"] <= 8.0


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_bytes_like_inputs_agree(kind):
    data = SAMPLES["png_rgb"].data
    np.testing.assert_array_equal(fr.analyze(kind(data)).features, fr.analyze(data).features)


def test_memoryview_slice_and_non_contiguous():
    data = SAMPLES["gif"].data
    assert fr.analyze(memoryview(b"xx" + data)[2:]).mime == "image/gif"
    with pytest.raises(fr.UnsupportedInput, match="cannot read memoryview as contiguous bytes"):
        fr.analyze(memoryview(data)[::2])


def test_text_files_get_text_features():
    text = "Ünïcode text, 3 words?\n"
    analysis = fr.analyze(text.encode())
    assert analysis.modality == "text" and analysis.mime == "text/plain"
    same_as_str = fr.analyze(text)
    for name in ("length", "words", "lines", "upper_share", "script", "byte_entropy"):
        assert analysis[name] == same_as_str[name], name


@pytest.mark.parametrize(
    ("data", "mime"),
    [
        (b'{"a": [1, 2.5e3, true, null], "b": {"c": "}"}}', "application/json"),
        (b"  [1, 2, 3]\n", "application/json"),
        (b"[1, 2", "text/plain"),
        (b"{} extra", "text/plain"),
        (b'"just a string"', "text/plain"),
        (b"{oops: 1}", "text/plain"),
        (b"plain \x1b[1mbold\x1b[0m text", "text/plain"),
        (b"text with a \x00 nul", "application/octet-stream"),
        (b"\xff\xfe invalid utf-8", "application/octet-stream"),  # frame sync of layer I: not taken for MP3
        (b"\xff\xfb\x90\x00", "audio/mpeg"),
        (b"BM but not a bitmap", "text/plain"),
        (b"RIFF\x10\x00\x00\x00AVI LIST", "application/octet-stream"),
    ],
)
def test_text_json_and_binary_sniffing(data, mime):
    assert fr.analyze(data).mime == mime


@pytest.mark.parametrize(
    ("array", "modality", "facts"),
    [
        (np.zeros((4, 5), np.float32), "tabular", {"ndim": 2, "length": 20, "itemsize": 4}),
        (np.zeros((64, 48, 3), np.uint8), "image", {"height": 64, "width": 48, "channels": 3}),
        # The values are not read: audio and 2-D images, which need them, stay tabular.
        (np.zeros(16000, np.int16), "tabular", {"length": 16000}),
        (np.zeros((2, 9000), ">f8"), "tabular", {"length": 18000, "itemsize": 8}),
        (np.asfortranarray(np.zeros((32, 32), np.bool_)), "tabular", {"ndim": 2}),
        (np.zeros((3, 32, 32), np.float32), "image", {"channels": 3, "height": 32}),
        (np.zeros(3, dtype=[("x", "<f4"), ("y", "<i2")]), "tabular", {"ndim": 1, "length": 3}),
        (np.zeros((), np.float64), "tabular", {"ndim": 0, "length": 1}),
    ],
)
def test_npy_header_shape_and_dtype(array, modality, facts):
    analysis = fr.analyze(npy_bytes(array))
    assert analysis.mime == "application/x-npy" and analysis.modality == modality
    for name, value in facts.items():
        assert analysis[name] == value, name
    if array.dtype.kind in "biuf":
        assert fr.DTYPE_KINDS[int(analysis["dtype_kind"])][0] == array.dtype.kind
    else:
        assert math.isnan(analysis["dtype_kind"])
    assert math.isnan(analysis["mean"])  # the payload is not read


def png_with(width: int, height: int, color_type: int = 2) -> bytes:
    return SAMPLES["png_rgb"].data[:16] + struct.pack(">IIBB", width, height, 8, color_type) + bytes(30)


def npy_with_header(header: str, version: bytes = b"\x01\x00") -> bytes:
    return b"\x93NUMPY" + version + struct.pack("<H", len(header)) + header.encode()


def wav_with_fmt(channels: int, rate: int) -> bytes:
    data = bytearray(wav_bytes())
    struct.pack_into("<HI", data, 22, channels, rate)
    return bytes(data)


CORRUPT = {
    "png_truncated": (SAMPLES["png_rgb"].data[:20], r"PNG header: .* is truncated \(needs 1 bytes at offset 25, the buffer has 20\)"),
    "png_zero_width": (png_with(0, 10), r"PNG header: width is 0"),
    "png_absurd_size": (png_with(100_000, 100_000), r"PNG header: width x height declares 100000 x 100000 pixels"),
    "png_bad_color_type": (png_with(10, 10, 5), r"PNG header: color type is 5"),
    "png_no_ihdr": (SAMPLES["png_rgb"].data[:12] + b"IDAT" + bytes(20), r"PNG header: IHDR chunk is not first"),
    "jpeg_truncated": (SAMPLES["jpeg_rgb"].data[:40], r"JPEG header: .* truncated"),
    "jpeg_no_frame": (b"\xff\xd8\xff\xe0\x00\x04ab\xff\xda\x00\x02", r"JPEG header: SOF frame header missing"),
    "jpeg_bad_marker": (b"\xff\xd8\xff\xe0\x00\x04ab\x00\x00", r"JPEG header: marker missing at offset 8"),
    "gif_truncated": (b"GIF89a\x10", r"GIF header: .* is truncated"),
    "gif_zero_height": (b"GIF89a\x10\x00\x00\x00" + bytes(10), r"GIF header: height is 0"),
    "webp_unknown_chunk": (b"RIFF\x20\x00\x00\x00WEBPXXXX" + bytes(20), r"WebP header: first chunk is not VP8"),
    "webp_truncated": (SAMPLES["webp_lossy"].data[:24], r"WebP header: VP8 start code is missing"),
    "bmp_truncated": (SAMPLES["bmp"].data[:20], r"BMP header: .* is truncated"),
    "tiff_ifd_out_of_range": (b"II*\x00\xff\xff\x00\x00", r"TIFF header: IFD entry count is truncated"),
    "tiff_no_width": (b"II*\x00\x08\x00\x00\x00\x00\x00", r"TIFF header: width is 0"),
    "wav_truncated": (wav_bytes()[:30], r"WAV header: .*truncated"),
    "wav_zero_channels": (wav_with_fmt(0, 16000), r"WAV header: channels is 0"),
    "wav_zero_rate": (wav_with_fmt(1, 0), r"WAV header: sample rate is 0"),
    "wav_no_fmt": (b"RIFF\x24\x00\x00\x00WAVEdata\x04\x00\x00\x00abcd", r"WAV header: fmt chunk is missing"),
    "flac_zero_rate": (flac_bytes(rate=0), r"FLAC header: sample rate is 0"),
    "flac_not_streaminfo": (b"fLaC\x84" + bytes(40), r"FLAC header: STREAMINFO is not the first metadata block \(type 4\)"),
    "flac_truncated": (flac_bytes()[:20], r"FLAC header: .* truncated"),
    "mp3_id3_not_syncsafe": (b"ID3\x03\x00\x00\x00\x00\x80\x00" + mp3_frame(), r"MP3 header: ID3 tag size is not syncsafe"),
    "ogg_truncated": (b"OggS\x00\x02" + bytes(8), r"OGG header: page segment count is truncated"),
    "npy_bad_version": (npy_with_header("{}", b"\x07\x00"), r"NPY header: version is 7"),
    "npy_header_truncated": (npy_with_header("{'descr': '<f4'")[:-5], r"NPY header: header dict is truncated"),
    "npy_no_shape": (npy_with_header("{'descr': '<f4', 'fortran_order': False}"), r"NPY header: shape is missing"),
    "npy_shape_overflow": (
        npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }"),
        r"NPY header: shape element count overflows 64 bits",
    ),
    "npy_huge_dim": (
        npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,), }"),
        r"NPY header: shape dimension overflows",
    ),
    "npy_shape_not_tuple": (npy_with_header("{'descr': '<f4', 'shape': [3], }"), r"NPY header: shape is not a tuple"),
}


@pytest.mark.parametrize("name", CORRUPT)
def test_corrupt_headers_name_format_and_field(name):
    data, message = CORRUPT[name]
    with pytest.raises(fr.CorruptFile, match=message):
        fr.analyze(data)


def test_corrupt_file_is_invalid_input_and_value_error():
    with pytest.raises(fr.InvalidInput):
        fr.analyze(png_with(0, 0))
    with pytest.raises(ValueError):
        fr.analyze(png_with(0, 0))


def test_wav_duration_counts_the_bytes_present():
    data = wav_bytes(channels=1, rate=8000, frames=8000)
    assert fr.analyze(data)["duration_s"] == pytest.approx(1.0)
    assert fr.analyze(data[:8044])["duration_s"] == pytest.approx(0.5)  # declared 1 s, half present


@pytest.mark.parametrize(("rate_index", "rate"), [(0, 44100), (1, 48000), (2, 32000)])
def test_mp3_frame_header_facts(rate_index, rate):
    analysis = fr.analyze(mp3_frame(rate_index, mono=True) * 2)
    assert (analysis.mime, analysis["sample_rate"], analysis["channels"]) == ("audio/mpeg", rate, 1)


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_empty_bytes_are_a_text_of_length_zero(kind):
    analysis = fr.analyze(kind(b""))
    assert (analysis.modality, analysis.mime) == ("text", "text/plain")
    assert (analysis["length"], analysis["size_bytes"], analysis["words"], analysis["lines"]) == (0, 0, 0, 0)
    assert analysis["byte_entropy"] == 0.0 and math.isnan(analysis["ascii_share"])  # no characters to share out


def test_large_buffers_release_the_gil_and_stay_in_bounds():
    data = SAMPLES["wav"].data + bytes(1_000_000)
    analysis = fr.analyze(data)
    assert analysis.mime == "audio/x-wav" and analysis["size_bytes"] == len(data)


def test_file_repr():
    analysis = fr.analyze(SAMPLES["png_rgb"].data)
    assert repr(analysis) == "Analysis(modality='image', mime='image/png', height=21, width=37, channels=3)"
    assert "  mime: image/png\n" in analysis.explain()
