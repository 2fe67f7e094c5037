"""Recordings are recognised by their first bytes, never by their names."""

from __future__ import annotations

import pytest

from domain.audio import sniff_audio


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"ID3\x04\x00\x00\x00\x00\x00\x00", "audio/mpeg"),
        (b"\xff\xfb\x90\x64\x00", "audio/mpeg"),  # a bare MPEG-1 layer III frame
        (b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00", "audio/mp4"),
        (b"\x00\x00\x00\x18ftyp3gp4\x00\x00\x00\x00", "audio/mp4"),  # Android recorders
        (b"RIFF\x24\x08\x00\x00WAVEfmt ", "audio/wav"),
        (b"#!AMR\n\x3c\x48\xf5", "audio/amr"),
        (b"#!AMR-WB\n\x00", "audio/amr"),
    ],
)
def test_the_four_recorder_formats(head: bytes, kind: str) -> None:
    assert sniff_audio(head) == kind


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"hello, this is text",
        b"%PDF-1.7\n",
        b"\x89PNG\r\n\x1a\n\x00\x00",
        b"RIFF\x24\x08\x00\x00AVI LIST",  # RIFF, but a video
        b"\x00\x00\x00\x20ftypqt  \x00\x00",  # a QuickTime movie
        b"\xff\xff\xff\xff",  # sync bits, reserved version and bitrate
    ],
)
def test_anything_else_is_refused(head: bytes) -> None:
    assert sniff_audio(head) is None
