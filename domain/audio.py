"""Which audio a recording is, from its first bytes (never from its name): mp3, m4a, wav or amr."""

from __future__ import annotations

# What the recorder (录音笔) or a phone produces, as the API stores and serves it.
AUDIO_TYPES: dict[str, str] = {
    "audio/mpeg": ".mp3",
    "audio/mp4": ".m4a",
    "audio/wav": ".wav",
    "audio/amr": ".amr",
}

# Bytes needed to tell the types apart.
SNIFF_BYTES = 16

# ISO base media brands an audio .m4a carries (M4A, MPEG-4, iso, 3GPP from Android recorders).
_MP4_BRANDS = (b"M4A ", b"M4B ", b"mp41", b"mp42", b"isom", b"iso2", b"3gp4", b"3gp5", b"3gp6", b"dash")


def sniff_audio(head: bytes) -> str | None:
    """The content type of an audio file from its first bytes, or None when it is none of the four."""
    if head.startswith(b"#!AMR"):  # AMR-NB "#!AMR\n", AMR-WB "#!AMR-WB\n"
        return "audio/amr"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio/wav"
    if len(head) >= 12 and head[4:8] == b"ftyp" and head[8:12] in _MP4_BRANDS:
        return "audio/mp4"
    if head.startswith(b"ID3"):  # an ID3v2 tag in front of MPEG audio frames
        return "audio/mpeg"
    # A bare MPEG audio frame: 11 sync bits, layer III (not the reserved layer), a valid bitrate index.
    if len(head) >= 3 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0:
        version, layer, bitrate = (head[1] >> 3) & 0x3, (head[1] >> 1) & 0x3, head[2] >> 4
        if version != 0x1 and layer == 0x1 and bitrate not in (0x0, 0xF):
            return "audio/mpeg"
    return None
