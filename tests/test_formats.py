"""TFRecord and OFRecord bytes: the test vectors of FORMATS.md, protobuf's own serialization, and our reader."""

from __future__ import annotations

import gzip
import io
import struct
import subprocess
import sys
import zlib
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


class _ReadSizes(io.BytesIO):
    """A stream that remembers the largest read asked of it."""

    largest = 0

    def read(self, size=-1):
        self.largest = max(self.largest, size)
        return super().read(size)


@pytest.mark.parametrize("crc_ok", [True, False])
def test_tfrecord_huge_length_reads_as_truncated_without_allocating_it(crc_ok):
    length = struct.pack("<Q", 2**63)
    crc = tfrecord.masked_crc(length) if crc_ok else 0
    stream = _ReadSizes(length + struct.pack("<I", crc) + b"x" * 100)
    message = "truncated payload \\(100 of 9223372036854775808 bytes\\)" if crc_ok else "length CRC mismatch"
    with pytest.raises(tfrecord.RecordError, match=f"^s: record 0 at byte 0: {message}$"):
        list(tfrecord.read_records(stream, "s"))
    assert stream.largest <= 1 << 24


def test_ofrecord_huge_length_reads_as_truncated_without_allocating_it():
    stream = _ReadSizes(ofrecord.frame_header(2**62) + b"x" * 10)
    with pytest.raises(ofrecord.RecordError, match=r"^s: record 0 at byte 0: truncated payload \(10 of 4611686018427387904 bytes\)$"):
        list(ofrecord.read_records(stream, "s"))
    assert stream.largest <= 1 << 24
    with pytest.raises(ofrecord.RecordError, match="negative length -1"):
        list(ofrecord.read_records(io.BytesIO(b"\xff" * 8), "s"))


def test_read_exact_gathers_short_reads_and_stops_at_the_end():
    class Trickle(io.BytesIO):
        def read(self, size=-1):
            return super().read(min(size, 3))

    assert protowire.read_exact(Trickle(b"abcdefgh"), 7) == b"abcdefg"
    assert protowire.read_exact(Trickle(b"abcd"), 10) == b"abcd"
    assert protowire.read_exact(io.BytesIO(b""), 5) == b""


# Feature{bytes_list|float_list|int64_list} bodies whose values carry the wrong wire type or a bad packed size.
_KEY_K = b"\x0a\x01k"


def _feature_map(feature: bytes) -> bytes:
    entry = _KEY_K + b"\x12" + protowire.varint(len(feature)) + feature
    return b"\x0a" + protowire.varint(len(entry)) + entry


@pytest.mark.parametrize(
    "feature, message",
    [
        (b"\x0a\x03\x08\x80\x01", "bytes list value with wire type 0"),  # a varint where bytes belong: not bytes(128)
        (b"\x12\x03\x0a\x01\x00", "packed float list of 1 bytes is not a multiple of 4"),
        (b"\x12\x02\x08\x01", "float list value with wire type 0"),
        (b"\x1a\x05\x0d\x00\x00\x80\x3f", "int64 list value with wire type 5"),
    ],
)
def test_wrong_wire_types_are_wire_errors(feature, message):
    with pytest.raises(protowire.WireError, match=message):
        tfrecord.decode_example(b"\x0a" + protowire.varint(len(_feature_map(feature))) + _feature_map(feature))


def test_zlib_stream_is_read_piecewise_and_a_cut_one_is_a_record_error():
    payloads = [bytes(range(256)) * 300, b"", b"tail"]
    data = zlib.compress(b"".join(tfrecord.frame(p) for p in payloads))
    stream = _ReadSizes(data)
    assert [p for _, p in tfrecord.read_records(tfrecord.decompressing(stream, "zlib"))] == payloads
    assert stream.largest <= 1 << 20
    with pytest.raises(tfrecord.RecordError, match="^s: record 0 at byte 0: cannot read: the zlib stream ends before its end marker$"):
        list(tfrecord.read_records(tfrecord.decompressing(io.BytesIO(data[:40]), "zlib"), "s"))
    with pytest.raises(tfrecord.RecordError, match="^s: record 0 at byte 0: cannot read: Not a gzipped file"):
        list(tfrecord.read_records(tfrecord.decompressing(io.BytesIO(data), "gzip"), "s"))


def _damaged(data: bytes, draw) -> bytes:
    """The bytes of a good file, cut short, bit-flipped, spliced with random bytes, or given a huge length."""
    how = draw(st.sampled_from(["cut", "flip", "splice", "huge", "random"]))
    if how == "random" or not data:
        return draw(st.binary(max_size=200))
    at = draw(st.integers(0, len(data) - 1))
    if how == "cut":
        return data[:at]
    if how == "flip":
        return data[:at] + bytes([data[at] ^ (1 << draw(st.integers(0, 7)))]) + data[at + 1 :]
    if how == "splice":
        return data[:at] + draw(st.binary(min_size=1, max_size=20)) + data[at:]
    huge = struct.pack("<Q", draw(st.integers(2**32, 2**64 - 1)))
    return data[:at] + huge + struct.pack("<I", tfrecord.masked_crc(huge)) + data[at:]


@settings(max_examples=200, deadline=None)
@given(records=st.lists(st.dictionaries(_keys, _of_feature, max_size=3), max_size=3), fmt=st.sampled_from(["tfrecord", "ofrecord", "gzip", "zlib"]), data=st.data())
def test_damaged_shards_raise_only_record_and_wire_errors(records, fmt, data):
    """Whatever a shard file holds, reading and decoding it ends normally or with one of our errors."""
    if fmt == "ofrecord":
        good = b"".join(ofrecord.frame_header(len(r)) + r for r in map(ofrecord.encode_record, records))
    else:
        tf_records = [{k: v for k, v in r.items() if v[0] in tfrecord.KINDS} for r in records]
        good = b"".join(tfrecord.frame(tfrecord.encode_example(r)) for r in tf_records)
        good = {"gzip": gzip.compress, "zlib": zlib.compress}.get(fmt, bytes)(good)
    damaged = _damaged(good, data.draw)
    try:
        if fmt == "ofrecord":
            for _, payload in ofrecord.read_records(io.BytesIO(damaged)):
                ofrecord.decode_record(payload)
        else:
            stream = tfrecord.decompressing(io.BytesIO(damaged), None if fmt == "tfrecord" else fmt)
            for _, payload in tfrecord.read_records(stream):
                tfrecord.decode_example(payload)
    except (tfrecord.RecordError, ofrecord.RecordError, protowire.WireError) as err:
        assert str(err)


_value_field = st.tuples(st.integers(1, 2), st.sampled_from([0, 1, 2, 5]), st.binary(max_size=12), st.integers(0, 2**64 - 1))


def _field_bytes(field: int, wire: int, payload: bytes, number: int) -> bytes:
    tag = protowire.varint(field << 3 | wire)
    if wire == 0:
        return tag + protowire.varint(number)
    if wire == 2:
        return tag + protowire.varint(len(payload)) + payload
    return tag + (payload + b"\x00" * 8)[: 8 if wire == 1 else 4]


@settings(max_examples=300, deadline=None)
@given(kind_field=st.integers(1, 5), values=st.lists(_value_field, max_size=4))
def test_well_framed_lists_of_any_wire_type_decode_or_raise_wire_error(kind_field, values):
    """Valid protobuf framing with any wire type in a value list: decoded, or a WireError; never a crash or bytes(n)."""
    body = b"".join(_field_bytes(*v) for v in values)
    feature = protowire.varint(kind_field << 3 | 2) + protowire.varint(len(body)) + body
    data = _feature_map(feature)
    for decode in (lambda d: tfrecord.decode_example(b"\x0a" + protowire.varint(len(d)) + d), ofrecord.decode_record):
        try:
            (kind, decoded), = decode(data).values()
            assert len(decoded) <= 4 * len(values) + sum(len(p) for _, _, p, _ in values)
        except protowire.WireError as err:
            assert str(err)
