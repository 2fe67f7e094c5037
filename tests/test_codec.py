"""The payload codec (codec.py): AES-GCM, key id in the metadata, rotation, tampering, configuration."""

from __future__ import annotations

import os

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import SecretStr
from temporalio.api.common.v1 import Payload

import payload_compression
from codec import COMPRESSION, ENCODING, KEY_ID, EncryptionCodec, PayloadKeyError, new_key_spec, parse_keys
from config import Settings
from connections import data_converter_for
from tests.support.keys import ACTIVE, KEYS, OLD


def plain(text: str) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=text.encode())


async def test_round_trip_and_the_key_id_in_the_metadata() -> None:
    codec = EncryptionCodec(parse_keys(KEYS))
    [enc] = await codec.encode([plain('{"car": "沪A12345"}')])
    assert enc.metadata["encoding"] == ENCODING and enc.metadata[KEY_ID] == b"t2"
    assert "沪A12345".encode() not in enc.data and b"car" not in enc.data
    [dec] = await codec.decode([enc])
    assert dec == plain('{"car": "沪A12345"}')
    # a fresh nonce each time: the same payload never encrypts the same
    [again] = await codec.encode([plain('{"car": "沪A12345"}')])
    assert again.data != enc.data


async def test_rotation_old_key_payloads_still_decode() -> None:
    old_only = EncryptionCodec(parse_keys(OLD))
    [by_old] = await old_only.encode([plain("before rotation")])
    assert by_old.metadata[KEY_ID] == b"t1"
    rotated = EncryptionCodec(parse_keys(KEYS))  # t2 first (encrypts), t1 kept (decrypts)
    assert (await rotated.decode([by_old]))[0] == plain("before rotation")
    assert (await rotated.encode([plain("after")]))[0].metadata[KEY_ID] == b"t2"
    # once t1 is dropped, its payloads cannot be read: keep old keys while histories need them
    with pytest.raises(PayloadKeyError, match="t1"):
        await EncryptionCodec(parse_keys(ACTIVE)).decode([by_old])


async def test_plain_payloads_pass_through_and_tampering_fails() -> None:
    codec = EncryptionCodec(parse_keys(KEYS))
    assert (await codec.decode([plain("old case")]))[0] == plain("old case")
    [enc] = await codec.encode([plain("x")])
    tampered = Payload(metadata=dict(enc.metadata), data=enc.data[:-1] + bytes([enc.data[-1] ^ 1]))
    with pytest.raises(Exception):  # noqa: B017 - cryptography's InvalidTag
        await codec.decode([tampered])
    # the key id is bound to the ciphertext: relabelling a payload with another key id fails too
    relabelled = Payload(metadata={**enc.metadata, KEY_ID: b"t1"}, data=enc.data)
    with pytest.raises(Exception):  # noqa: B017
        await codec.decode([relabelled])


@pytest.mark.parametrize(
    "bad", ["", "k1", "k1:not base64!", "k1:" + "QUJD", f"{ACTIVE},{ACTIVE}", ":QUJDREVGR0hJSktMTU5PUA=="]
)
def test_bad_key_rings_are_refused(bad: str) -> None:
    with pytest.raises(PayloadKeyError):
        parse_keys(bad)


def test_new_keys_are_random_and_valid() -> None:
    a, b = new_key_spec("k9"), new_key_spec("k9")
    assert a != b and parse_keys(a)[0][0] == "k9" and len(parse_keys(a)[0][1]) == 32


def test_deployed_clients_refuse_to_run_without_a_key_unless_told() -> None:
    with pytest.raises(ValueError, match="INTAKE_PAYLOAD_KEYS"):
        data_converter_for(Settings())
    assert data_converter_for(Settings(payload_encryption="off")).payload_codec is None
    conv = data_converter_for(Settings(payload_keys=SecretStr(KEYS)))
    assert isinstance(conv.payload_codec, EncryptionCodec) and conv.payload_codec.active_key_id == "t2"


async def test_a_decrypt_only_key_reads_but_never_writes() -> None:
    """Phase one of a rotation: the new key is in every ring, the old one still encrypts."""
    ring = f"{OLD},{ACTIVE}"  # t2 added after t1: decrypt-only while t1 is named the encrypting key
    phase_one = EncryptionCodec(parse_keys(ring), encrypt_key_id="t1")
    phase_two = EncryptionCodec(parse_keys(ring), encrypt_key_id="t2")
    [by_one] = await phase_one.encode([plain("before")])
    [by_two] = await phase_two.encode([plain("after")])
    assert (by_one.metadata[KEY_ID], by_two.metadata[KEY_ID]) == (b"t1", b"t2")
    # every process of either phase reads what the other wrote
    assert (await phase_one.decode([by_two]))[0] == plain("after")
    assert (await phase_two.decode([by_one]))[0] == plain("before")
    conv = data_converter_for(Settings(payload_keys=SecretStr(ring), payload_encrypt_key_id="t2"))
    assert isinstance(conv.payload_codec, EncryptionCodec) and conv.payload_codec.active_key_id == "t2"
    # an encrypting key the ring lacks is refused at start, not at the first payload
    with pytest.raises(PayloadKeyError, match="INTAKE_PAYLOAD_ENCRYPT_KEY_ID"):
        data_converter_for(Settings(payload_keys=SecretStr(ring), payload_encrypt_key_id="t3"))


# --- compression before encryption (SPEC §10: a case's history stays small) -------------------------


def case_json(n: int = 40) -> Payload:
    """A payload like a case's change: JSON with many repeated keys."""
    steps = ",".join(f'{{"key":"step#{i}","label":"经理回访","overdue":false,"owner":null}}' for i in range(n))
    return plain(f'{{"case_id":7,"open_steps":[{steps}]}}')


async def test_large_payloads_are_compressed_before_they_are_encrypted() -> None:
    codec = EncryptionCodec(parse_keys(KEYS))
    original = case_json()
    [enc] = await codec.encode([original])
    assert enc.metadata[COMPRESSION] == b"zstd" and enc.metadata["encoding"] == ENCODING
    assert len(enc.data) < len(original.SerializeToString()) // 3
    assert b"step#1" not in enc.data
    assert (await codec.decode([enc]))[0] == original


async def test_small_or_incompressible_payloads_stay_uncompressed() -> None:
    codec = EncryptionCodec(parse_keys(KEYS))
    noise = Payload(metadata={"encoding": b"binary/plain"}, data=os.urandom(4000))
    for p in (plain('"callback"'), noise):
        [enc] = await codec.encode([p])
        assert COMPRESSION not in enc.metadata
        assert (await codec.decode([enc]))[0] == p


async def test_payloads_encrypted_before_compression_existed_still_decode() -> None:
    """Histories written before: AES-GCM of the serialized payload, the key id alone as associated data."""
    kid, key = parse_keys(KEYS)[1]
    nonce = os.urandom(12)
    original = case_json()
    old = Payload(metadata={"encoding": ENCODING, KEY_ID: kid.encode()},
                  data=nonce + AESGCM(key).encrypt(nonce, original.SerializeToString(), kid.encode()))
    assert (await EncryptionCodec(parse_keys(KEYS)).decode([old]))[0] == original


async def test_the_compression_marker_cannot_be_stripped_or_added() -> None:
    codec = EncryptionCodec(parse_keys(KEYS))
    [enc] = await codec.encode([case_json()])
    stripped = Payload(metadata={k: v for k, v in enc.metadata.items() if k != COMPRESSION}, data=enc.data)
    with pytest.raises(InvalidTag):
        await codec.decode([stripped])
    [small] = await codec.encode([plain('"x"')])
    with pytest.raises(InvalidTag):
        await codec.decode([Payload(metadata={**small.metadata, COMPRESSION: b"zstd"}, data=small.data)])


def test_unknown_or_damaged_compression_is_a_clear_error() -> None:
    packed, marker = payload_compression.compress(case_json().SerializeToString())
    assert marker == b"zstd"
    with pytest.raises(payload_compression.CompressionError, match="unknown"):
        payload_compression.decompress(packed, b"brotli")
    with pytest.raises(payload_compression.CompressionError, match="damaged"):
        payload_compression.decompress(packed[:-5] + b"\0\0\0\0\0", marker)
