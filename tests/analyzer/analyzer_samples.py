"""Real file buffers for the analyzer tests and benchmarks, made in memory.

Pillow, ``wave``, ``gzip``, ``zipfile`` and numpy write the formats they
support; PDF, FLAC, Ogg and MP3 are minimal hand-made files (valid headers
followed by placeholder payload) since no standard-library writer exists.
"""

from __future__ import annotations

import gzip
import io
import json
import struct
import wave
import zipfile
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Sample:
    """A file's bytes and what its header states (None: not stated)."""

    data: bytes
    mime: str
    modality: str
    height: int | None = None
    width: int | None = None
    channels: int | None = None
    sample_rate: int | None = None
    duration_s: float | None = None


def _pillow(fmt: str, mode: str, size: tuple[int, int] = (37, 21), **options) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(0)
    width, height = size
    bands = len(mode) if mode not in ("L", "P") else 1
    pixels = rng.integers(0, 256, (height, width, bands), dtype=np.uint8).squeeze(-1 if bands == 1 else ())
    image = Image.fromarray(pixels, "L" if mode == "P" else mode)
    if mode == "P":
        image = image.convert("P")
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def wav_bytes(channels: int = 2, rate: int = 16000, frames: int = 8000, width: int = 2) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(width)
        out.setframerate(rate)
        out.writeframes(bytes(frames * channels * width))
    return buffer.getvalue()


def flac_bytes(rate: int = 44100, channels: int = 2, bits: int = 16, total: int = 441000) -> bytes:
    """fLaC + a last-block STREAMINFO (34 bytes) + a placeholder frame."""
    info = bytearray(34)
    struct.pack_into(">HH", info, 0, 4096, 4096)
    packed = (rate << 44) | ((channels - 1) << 41) | ((bits - 1) << 36) | total
    info[10:18] = packed.to_bytes(8, "big")
    return b"fLaC" + bytes([0x80, 0, 0, 34]) + bytes(info) + b"\xff\xf8" + bytes(64)


def ogg_vorbis_bytes(rate: int = 44100, channels: int = 2) -> bytes:
    """One Ogg page holding a Vorbis identification header."""
    packet = b"\x01vorbis" + struct.pack("<IBIiii", 0, channels, rate, 0, 128000, 0) + b"\xb8\x01"
    page = b"OggS\x00\x02" + bytes(8) + struct.pack("<III", 1, 0, 0) + bytes([1, len(packet)])
    return page + packet


def mp3_frame(rate_index: int = 0, mono: bool = False) -> bytes:
    """An MPEG-1 layer III frame header (128 kbps) and a silent 417-byte frame."""
    header = bytes([0xFF, 0xFB, 0x90 | (rate_index << 2), 0xC0 if mono else 0x00])
    return header + bytes(413)


def mp3_id3_bytes() -> bytes:
    tag_body = b"TIT2" + struct.pack(">I", 6) + b"\x00\x00\x03title"
    size = len(tag_body)
    syncsafe = bytes([(size >> 21) & 0x7F, (size >> 14) & 0x7F, (size >> 7) & 0x7F, size & 0x7F])
    return b"ID3\x03\x00\x00" + syncsafe + tag_body + mp3_frame() * 3


def pdf_bytes() -> bytes:
    return (
        b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
        b"2 0 obj\n<< /Type /Pages /Kids [] /Count 0 >>\nendobj\n"
        b"trailer\n<< /Root 1 0 R >>\n%%EOF\n"
    )


def zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("notes.txt", "fastroute " * 50)
    return buffer.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def samples() -> dict[str, Sample]:
    """One real buffer per supported kind, keyed by a readable name."""
    return {
        "png_rgb": Sample(_pillow("PNG", "RGB"), "image/png", "image", 21, 37, 3),
        "png_rgba": Sample(_pillow("PNG", "RGBA"), "image/png", "image", 21, 37, 4),
        "png_gray": Sample(_pillow("PNG", "L"), "image/png", "image", 21, 37, 1),
        "jpeg_rgb": Sample(_pillow("JPEG", "RGB"), "image/jpeg", "image", 21, 37, 3),
        "jpeg_gray": Sample(_pillow("JPEG", "L"), "image/jpeg", "image", 21, 37, 1),
        "gif": Sample(_pillow("GIF", "P"), "image/gif", "image", 21, 37, 3),
        "webp_lossy": Sample(_pillow("WEBP", "RGB"), "image/webp", "image", 21, 37, 3),
        "webp_lossless": Sample(_pillow("WEBP", "RGBA", lossless=True), "image/webp", "image", 21, 37, 4),
        "bmp": Sample(_pillow("BMP", "RGB"), "image/bmp", "image", 21, 37, 3),
        "tiff": Sample(_pillow("TIFF", "RGB"), "image/tiff", "image", 21, 37, 3),
        "wav": Sample(wav_bytes(), "audio/x-wav", "audio", channels=2, sample_rate=16000, duration_s=0.5),
        "flac": Sample(flac_bytes(), "audio/flac", "audio", channels=2, sample_rate=44100, duration_s=10.0),
        "ogg": Sample(ogg_vorbis_bytes(), "audio/ogg", "audio", channels=2, sample_rate=44100),
        "mp3_id3": Sample(mp3_id3_bytes(), "audio/mpeg", "audio", channels=2, sample_rate=44100),
        "mp3_frames": Sample(mp3_frame() * 3, "audio/mpeg", "audio", channels=2, sample_rate=44100),
        "pdf": Sample(pdf_bytes(), "application/pdf", "document"),
        "zip": Sample(zip_bytes(), "application/zip", "archive"),
        "gzip": Sample(gzip.compress(b"fastroute " * 100), "application/gzip", "archive"),
        "npy": Sample(npy_bytes(np.zeros((4, 5), np.float32)), "application/x-npy", "tabular"),
        "json": Sample(json.dumps({"model": "a", "scores": [1, 2.5, None]}).encode(), "application/json", "text"),
        "text": Sample("Route this request to the best model.\nThanks!\n".encode(), "text/plain", "text"),
        "utf8_text": Sample("Привет, мир! Маршрутизация запросов.\n".encode(), "text/plain", "text"),
        "binary": Sample(np.random.default_rng(7).bytes(1024), "application/octet-stream", "binary"),
    }
