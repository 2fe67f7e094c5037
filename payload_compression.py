"""Payload compression before encryption (SPEC §10: a case's history stays small).

The codec (codec.py) compresses a payload's serialized bytes with Zstandard before it encrypts them,
and names the compression in the encrypted payload's metadata (``compression: zstd``); a payload
without that key was stored uncompressed (everything written before compression existed) and
decodes as it always did. Ciphertext does not compress, so this is the only place it can happen.

Small payloads (a stage name, a flag) stay as they are: below :data:`MIN_SIZE` bytes, or when Zstandard
does not save more than the metadata key costs, nothing is gained. Decompression is bounded
(:data:`MAX_SIZE`), so a forged frame cannot make a worker allocate without limit; the codec also binds
the marker to the ciphertext, so it cannot be added or stripped on its own.
"""

from __future__ import annotations

import threading

import zstandard

METADATA_KEY = "compression"
ZSTD = b"zstd"
# Below this many bytes a payload is left as it is (a Zstandard frame has ~10 bytes of its own).
MIN_SIZE = 96
# What the metadata key costs in the payload (key, value and protobuf framing): saving less is no saving.
MARKER_COST = len(METADATA_KEY) + len(ZSTD) + 6
# A decompressed payload is never larger than Temporal's blob limit (2 MB by default); generous margin.
MAX_SIZE = 16 * 1024 * 1024
# Payloads are a few KB: a high level costs microseconds and saves bytes that stay in history for good.
LEVEL = 12

# A Zstandard context serves one operation at a time: one pair per thread (API, worker, codec server).
_local = threading.local()


def _contexts() -> tuple[zstandard.ZstdCompressor, zstandard.ZstdDecompressor]:
    pair: tuple[zstandard.ZstdCompressor, zstandard.ZstdDecompressor] | None = getattr(_local, "pair", None)
    if pair is None:
        pair = _local.pair = (
            zstandard.ZstdCompressor(level=LEVEL, write_content_size=True, write_checksum=False),
            zstandard.ZstdDecompressor(),
        )
    return pair


class CompressionError(ValueError):
    """A payload names a compression this code does not know, or its frame is damaged or too large."""


def compress(data: bytes) -> tuple[bytes, bytes | None]:
    """`data` compressed and the marker naming how (None: left as it is, because it did not help)."""
    if len(data) < MIN_SIZE:
        return data, None
    packed = _contexts()[0].compress(data)
    if len(packed) + MARKER_COST >= len(data):
        return data, None
    return packed, ZSTD


def decompress(data: bytes, marker: bytes | None) -> bytes:
    """The original bytes of a payload compressed as `marker` says (None or empty: not compressed)."""
    if not marker:
        return data
    if marker != ZSTD:
        raise CompressionError(f"unknown payload compression {marker!r}")
    try:
        return _contexts()[1].decompress(data, max_output_size=MAX_SIZE)
    except zstandard.ZstdError as exc:
        raise CompressionError(f"damaged or oversized compressed payload: {exc}") from exc
