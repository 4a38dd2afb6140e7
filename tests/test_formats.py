"""TFRecord and OFRecord bytes: the test vectors of FORMATS.md, protobuf's own serialization, and our reader."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
from pathlib import Path

import google_crc32c
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prep.formats import ofrecord, protowire, tfrecord

PROTO_DIR = Path(__file__).resolve().parent.parent / "prep" / "formats"


def test_crc32c_is_castagnoli():
    assert google_crc32c.value(b"123456789") == 0xE3069283


def test_framing_of_empty_payload():
    assert tfrecord.frame(b"").hex() == "0000000000000000" + "29039807" + "d8ea82a2"


def test_framing_of_hello_matches_tensorflow():
    framed = tfrecord.frame(b"hello")
    assert framed.hex() == "0500000000000000" + "eab2043e" + "68656c6c6f" + "bb1f1c19"
    assert len(framed) == 21


def test_streamed_footer_equals_whole_payload_crc():
    chunks = [b"he", b"", b"llo"]
    assert tfrecord.payload_footer(chunks) == struct.pack("<I", tfrecord.masked_crc(b"hello"))


def test_example_bytes_match_formats_vector():
    data = tfrecord.encode_example({"label": ("int64", [3]), "image": ("bytes", [b"abc"])})
    assert data.hex() == "0a220a100a05696d61676512070a050a036162630a0e0a056c6162656c12051a030a0103"


def test_varint_of_negative_numbers_is_ten_bytes():
    assert protowire.varint(-1) == b"\xff" * 9 + b"\x01"
    assert protowire.varint(300) == b"\xac\x02"


def test_read_records_round_trip_and_detects_damage():
    data = tfrecord.frame(b"one") + tfrecord.frame(b"two!")
    assert list(tfrecord.read_records(io.BytesIO(data))) == [(0, b"one"), (19, b"two!")]
    flipped = bytearray(data)
    flipped[14] ^= 0x01
    with pytest.raises(tfrecord.RecordError, match="record 0 at byte 0: payload CRC mismatch"):
        list(tfrecord.read_records(io.BytesIO(bytes(flipped)), "x"))
    with pytest.raises(tfrecord.RecordError, match="record 1 at byte 19: truncated"):
        list(tfrecord.read_records(io.BytesIO(data[:-2])))


def test_ofrecord_bytes_by_hand():
    # OFRecord{feature: {"images": bytes_list["ab"], "labels": int32_list[7]}}, keys sorted.
    images = b"\x0a\x06images" + b"\x12\x06" + b"\x0a\x04" + b"\x0a\x02ab"
    labels = b"\x0a\x06labels" + b"\x12\x05" + b"\x22\x03" + b"\x0a\x01\x07"
    expected = b"\x0a" + bytes([len(images)]) + images + b"\x0a" + bytes([len(labels)]) + labels
    record = ofrecord.encode_record({"labels": ("int32", [7]), "images": ("bytes", [b"ab"])})
    assert record == expected
    framed = ofrecord.frame_header(len(record)) + record
    assert framed[:8] == struct.pack("<q", len(expected))
    assert list(ofrecord.read_records(io.BytesIO(framed * 2))) == [(0, record), (8 + len(record), record)]
    with pytest.raises(ofrecord.RecordError, match="record 1 at byte"):
        list(ofrecord.read_records(io.BytesIO(framed + framed[:-1])))


@pytest.fixture(scope="module")
def messages(tmp_path_factory):
    """Message classes compiled from our own .proto files by protoc (grpcio-tools), loaded in a private pool."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    out = tmp_path_factory.mktemp("proto") / "set.pb"
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO_DIR}", f"--descriptor_set_out={out}", "example.proto", "ofrecord.proto"],
        check=True,
    )
    pool = descriptor_pool.DescriptorPool()
    for file in descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file:
        pool.Add(file)
    return {
        "Example": message_factory.GetMessageClass(pool.FindMessageTypeByName("prep.tf.Example")),
        "OFRecord": message_factory.GetMessageClass(pool.FindMessageTypeByName("prep.oneflow.OFRecord")),
    }


_keys = st.text(min_size=0, max_size=12)
_tf_feature = st.one_of(
    st.tuples(st.just("bytes"), st.lists(st.binary(max_size=40), max_size=3)),
    st.tuples(st.just("int64"), st.lists(st.integers(-(2**63), 2**63 - 1), max_size=4)),
    st.tuples(st.just("float"), st.lists(st.floats(width=32, allow_nan=False), max_size=4)),
)
_of_feature = st.one_of(
    _tf_feature,
    st.tuples(st.just("int32"), st.lists(st.integers(-(2**31), 2**31 - 1), max_size=4)),
    st.tuples(st.just("double"), st.lists(st.floats(allow_nan=False), max_size=4)),
)
_FIELD = {"bytes": "bytes_list", "int64": "int64_list", "float": "float_list", "int32": "int32_list", "double": "double_list"}


def _fill(feature_map, features):
    for key, (kind, values) in features.items():
        getattr(feature_map[key], _FIELD[kind]).SetInParent()
        getattr(feature_map[key], _FIELD[kind]).value.extend(values)


def _assert_same_message(ours: bytes, message) -> None:
    """Protobuf parses our bytes to the same message; with prefix-free keys the bytes are identical too.

    (Python's upb runtime orders a key after keys it is a prefix of; we sort plainly, as C++ does.)
    """
    assert type(message).FromString(ours) == message
    keys = list(message.features.feature if hasattr(message, "features") else message.feature)
    if not any(a != b and b.startswith(a) for a in keys for b in keys):
        assert ours == message.SerializeToString(deterministic=True)


@settings(max_examples=150, deadline=None)
@given(features=st.dictionaries(_keys, _tf_feature, max_size=5))
def test_example_equals_protobuf_deterministic_serialization(messages, features):
    example = messages["Example"]()
    example.features.SetInParent()
    _fill(example.features.feature, features)
    ours = tfrecord.encode_example(features)
    _assert_same_message(ours, example)
    decoded = tfrecord.decode_example(ours)
    assert {k: (t, v) for k, (t, v) in decoded.items()} == {k: (t, list(v)) for k, (t, v) in features.items()}


@settings(max_examples=150, deadline=None)
@given(features=st.dictionaries(_keys, _of_feature, max_size=5))
def test_ofrecord_equals_protobuf_deterministic_serialization(messages, features):
    record = messages["OFRecord"]()
    _fill(record.feature, features)
    ours = ofrecord.encode_record(features)
    _assert_same_message(ours, record)
    assert ofrecord.decode_record(ours) == {k: (t, list(v)) for k, (t, v) in features.items()}


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=64))
def test_decoder_never_crashes_on_garbage(data):
    try:
        tfrecord.decode_example(data)
        ofrecord.decode_record(data)
    except protowire.WireError:
        pass
