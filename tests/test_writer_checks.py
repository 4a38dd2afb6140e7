"""What a writer refuses before (and while) writing: labels its types cannot hold, shard-name patterns that cannot work."""

from __future__ import annotations

import unicodedata

import pytest
from conftest import crop, png_bytes
from hypothesis import given, settings
from hypothesis import strategies as st

from prep.core.errors import ConfigError, InputError, PrepError, WriteError
from prep.encoders.passthrough import PassthroughEncoder
from prep.executors.local import LocalExecutor
from prep.labels.jsonl import JsonlLabels
from prep.labels.space import SpaceLabels
from prep.pipeline import convert
from prep.run.listing import read_items
from prep.sources.base import Source
from prep.sources.image_dir import ImageDirSource
from prep.split import NoSplit
from prep.writers import OFRecordWriter, TFRecordWriter

ONEFLOW = {"images": "encoded", "labels": "label:int32"}


class AnyName(Source):
    """A source where every name is a file: label checks without a folder of images."""

    def check(self) -> None:
        pass

    def describe(self) -> str:
        return "any"

    def resolve(self, name: str) -> str:
        return name


def listing_of(tmp_path, *labels: int | str):
    path = tmp_path / "labels.txt"
    path.write_text("".join(f"img_{i}.png {label}\n" for i, label in enumerate(labels)))
    return path, read_items(AnyName(), SpaceLabels(str(path)))


# --- labels that do not fit the stored type --------------------------------------------------------------

EDGES = [
    ("int64", TFRecordWriter, -(2**63), 2**63 - 1),
    ("int32", OFRecordWriter, -(2**31), 2**31 - 1),
    ("float", TFRecordWriter, -(2**24), 2**24),  # beyond 2**24 a float32 rounds integers
    ("double", OFRecordWriter, -(2**53), 2**53),
]


@pytest.mark.parametrize("kind, writer_class, low, high", EDGES)
def test_labels_at_the_edges_of_each_type_fit_and_one_beyond_does_not(tmp_path, kind, writer_class, low, high):
    writer = writer_class(features={"image": "encoded", "label": f"label:{kind}"})
    path, listing = listing_of(tmp_path, 0, low, high)
    writer.check_labels(listing)
    for beyond, line in ((high + 1, 2), (low - 1, 3)):
        path, listing = listing_of(tmp_path, 0, 1, beyond)
        with pytest.raises(InputError) as err:
            writer.check_labels(listing)
        assert str(err.value).startswith(f"{path}:3: label {beyond} does not fit 'label', stored as {kind} ({low}..{high}); fix the label, ")
        assert str(err.value).endswith("or set labels.kind=name to number the classes 0..n-1")


def test_the_message_says_which_wider_type_would_hold_the_label(tmp_path):
    path, listing = listing_of(tmp_path, 3, 2**32 + 1)
    with pytest.raises(InputError) as err:
        OFRecordWriter(features=ONEFLOW).check_labels(listing)
    assert str(err.value) == (
        f"{path}:2: label 4294967297 does not fit 'labels', stored as int32 (-2147483648..2147483647); fix the label, "
        "store it as int64 (features.labels=label:int64), or set labels.kind=name to number the classes 0..n-1"
    )


def test_a_5000_digit_label_is_out_of_range_like_any_other(tmp_path):
    path, listing = listing_of(tmp_path, 1, "9" * 5000)
    with pytest.raises(InputError) as err:
        TFRecordWriter(features={"image": "encoded", "label": "label"}).check_labels(listing)
    assert str(err.value).startswith(f"{path}:2: label 99999999999999999999... (5000 characters) does not fit 'label', stored as int64 ")


def test_class_names_always_fit_and_unused_label_types_are_not_checked(tmp_path):
    _, names = listing_of(tmp_path, "cat", "dog")
    OFRecordWriter(features=ONEFLOW).check_labels(names)
    _, huge = listing_of(tmp_path, 2**70)
    TFRecordWriter(features={"image": "encoded"}).check_labels(huge)  # no label stored: nothing to wrap


@pytest.mark.parametrize(
    "features, label, message",
    [
        (ONEFLOW, 2**32 + 1, "a.png: label 4294967297 does not fit 'labels', stored as int32 (-2147483648..2147483647); not written"),
        ({"i": "encoded", "l": "label"}, -(2**63) - 1, "a.png: label -9223372036854775809 does not fit 'l', stored as int64"),
        ({"i": "encoded", "l": "label"}, 10**5000, "a.png: label (an integer of about 5001 digits) does not fit 'l', stored as int64"),
        ({"i": "encoded", "l": "label:float"}, 2**24 + 1, "a.png: label 16777217 does not fit 'l', stored as float"),
    ],
    ids=["int32", "int64", "int64-5001-digits", "float"],  # str() of the huge label would fail in pytest's ids
)
def test_the_record_encoder_refuses_to_wrap_as_a_last_guard(features, label, message):
    writer = (OFRecordWriter if "labels" in features else TFRecordWriter)(features=features)
    values = {"encoded": b"x", "label": label, "filename": b"a.png"}
    with pytest.raises(WriteError) as err:
        writer.frame(values)
    assert str(err.value).startswith(message)
    assert writer.frame({**values, "label": 7})  # a label that fits is framed as before


def image_folder(tmp_path, photos, labels: list[str]):
    root = tmp_path / "images"
    root.mkdir()
    for i in range(len(labels)):
        (root / f"{i}.png").write_bytes(png_bytes(crop(photos, i, size=16)))
    return root


@pytest.mark.parametrize(
    "writer, label, fits",
    [
        (OFRecordWriter(num_shards=1, features=ONEFLOW), 2**32 + 1, "does not fit 'labels', stored as int32"),
        (TFRecordWriter(features={"image": "encoded", "label": "label"}), 2**63, "does not fit 'label', stored as int64"),
        (TFRecordWriter(features={"image": "encoded", "label": "label"}), "7" * 4400, "does not fit 'label', stored as int64"),
    ],
)
def test_a_run_with_a_label_out_of_range_writes_no_shard(tmp_path, photos, writer, label, fits):
    root = image_folder(tmp_path, photos, ["0", "1", "2"])
    label_file = tmp_path / "label.txt"
    label_file.write_text(f'{{"0.png": 3}}\n{{"1.png": {label}}}\n{{"2.png": 5}}\n')
    out = tmp_path / "out"
    with pytest.raises(PrepError) as err:
        convert(name="t", source=ImageDirSource(str(root)), labels=JsonlLabels(str(label_file)), splitter=NoSplit("train"),
                encoder=PassthroughEncoder(), writer=writer, executor=LocalExecutor(1), output_dir=str(out), progress=False)
    assert fits in str(err.value)
    # No shard and no summary: nothing that verify could call ok. (Until pipeline.py calls check_labels the
    # encoder's guard stops the run, and an unfinished-run marker is left for resume; with it, not even that.)
    written = [p for p in out.rglob("*") if p.is_file() and ".prep-manifest" not in p.parts] if out.exists() else []
    assert written == []


# --- shard-name patterns ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern, message",
    [
        ("{index:s}", "{index:s} cannot format index (an integer): Unknown format code 's' for object of type 'int'"),
        ("{split:d}-{index}", "{split:d} cannot format split (text): Unknown format code 'd' for object of type 'str'"),
        ("{index:.0}", "{index:.0} cannot format index (an integer): Precision not allowed in integer format specifier"),
        ("{index:>99999999999}", "{index:>99999999999}: a width or precision over 255, longer than a file name can be"),
        ("{index:{count}}", "{index:{count}}: fields inside a format spec are not accepted"),
        ("{dataset.__class__}-{index}", "{dataset.__class__}: only plain field names are accepted (no attribute or index access)"),
        ("{split[0]}-{index}", "{split[0]}: only plain field names are accepted (no attribute or index access)"),
        ("{split!r}-{index}", "{split!r}: conversions (!r, !s, !a) are not accepted"),
        ("{name}-{index}", "unknown field(s) ['name']; use ['count', 'dataset', 'index', 'number', 'split']"),
        ("{}-{index}", "unknown field(s) ['']"),
        ("{0}", "unknown field(s) ['0']"),
        ("part-{index", "expected '}' before end of string"),
        ("data.tfrecord", "needs {index} or {number} so that shards get distinct names"),
        ("/{index}", "must stay inside the output directory"),
        ("../{index}", "must stay inside the output directory"),
        ("a/../../{index}", "must stay inside the output directory"),
        ("a//{index}", "gives 'a//0', with an empty or '.' folder name"),
        ("{split}/./{index}", "gives 'train/./0', with an empty or '.' folder name"),
        ("{index}/", "gives '0/', with an empty or '.' folder name"),
        ("a\\{index}", "backslashes are not accepted: separate folders with /"),
        ("a\x00{index}", "with a control character '\\x00': names must be printable"),
        ("a\n{index}", "with a control character '\\n'"),
        ("{index:c}", "with a control character '\\x00'"),
        ("x" * 250 + "{index:08d}", "gives a name of 258 bytes"),
        ("", "give a shard name template"),
    ],
)
def test_bad_patterns_are_config_errors_naming_the_key(pattern, message):
    with pytest.raises(ConfigError) as err:
        TFRecordWriter(pattern=pattern, features={"image": "encoded"})
    assert str(err.value).startswith(f"writer.pattern={pattern!r}: ")
    assert message in str(err.value)


@pytest.mark.parametrize(
    "pattern, path",
    [
        ("{dataset}-{split}.tfrecord-{index:05d}-of-{count:05d}", "d-train.tfrecord-00003-of-00012"),
        ("{split}/part-{index}", "train/part-3"),
        ("data_{index}.tfrecord", "data_3.tfrecord"),
        ("{count:x}-{index:x}", "c-3"),
        ("{split:>8}/{number:03}", "   train/004"),
        ("shard-{{literal}}-{index}", "shard-{literal}-3"),
    ],
)
def test_good_patterns_name_shards_as_before(pattern, path):
    assert TFRecordWriter(pattern=pattern, features={"image": "encoded"}).shard_path("d", "train", 3, 12) == path


_PATTERN_PIECES = st.sampled_from(
    ["{index}", "{number}", "{count}", "{split}", "{dataset}", "{index:05d}", "{index:x}", "{number:>4}", "{count:c}",
     "{index:s}", "{split:d}", "{index:,}", "{index:%}", "{split:^9}", "{index!r}", "{split[0]}", "{dataset.upper}",
     "{index:{count}}", "{", "}", "{{", "}}", ":", "!", "/", "//", "..", ".", "\\", "\x00", "\t", "part-", "a",
     "é", "\u200b", "x" * 120, "-of-", ".tfrecord", "{index:0>300}", "{index:9999}"]
)


@settings(max_examples=300, deadline=None)
@given(pattern=st.lists(_PATTERN_PIECES, max_size=8).map("".join))
def test_a_pattern_is_refused_up_front_or_names_every_shard_safely(pattern):
    try:
        writer = TFRecordWriter(pattern=pattern, features={"image": "encoded"})
    except ConfigError as err:
        assert str(err).startswith(f"writer.pattern={pattern!r}: ")
        return
    for split, count in (("train", 3), ("validation", 120)):
        paths = [writer.shard_path("digits", split, index, count) for index in range(count)]
        assert len(set(paths)) == count  # distinct names
        for path in paths:
            parts = path.split("/")
            assert not path.startswith("/") and "\\" not in path
            assert all(part not in ("", ".", "..") and len(part.encode()) <= 255 for part in parts)
            assert not any(unicodedata.category(c) in ("Cc", "Cs") for c in path)


# --- records that could not be decoded back ------------------------------------------------------------


def test_raw_pixels_of_a_folder_without_height_and_width_are_refused_before_anything_is_written(tmp_path, imagenet_folder):
    """Raw bytes say nothing of their shape: images of a folder may differ in size, so a record without height
    and width could never be rebuilt. Refused in one line naming the keys and the fix; the folder is untouched."""
    from prep.encoders.raw import RawEncoder

    out = tmp_path / "out"
    # no shape at all; a height only; height and width but no channels (grayscale and colour images of one size)
    for features in ({"image": "encoded", "label": "label", "image/filename": "filename"}, {"image": "encoded", "label": "label", "height": "height"},
                     {"image": "encoded", "label": "label", "height": "height", "width": "width"}):
        with pytest.raises(ConfigError) as err:
            convert(
                name="t", source=ImageDirSource(str(imagenet_folder.root)), labels=SpaceLabels(str(imagenet_folder.labels)), splitter=NoSplit("train"),
                encoder=RawEncoder(), writer=TFRecordWriter(shard_size=10, features=features), executor=LocalExecutor(1), output_dir=str(out), progress=False,
            )
        assert "encoder=raw stores pixels without their shape" in str(err.value) and "+features.channels=channels" in str(err.value)
        assert str(imagenet_folder.root) in str(err.value)
        assert not out.exists()


def test_raw_pixels_are_accepted_where_their_shape_is_known(tmp_path, imagenet_folder):
    """With height and width stored, from a source of one shape (digits), or as .npy in a tar, raw runs go ahead."""
    from prep.encoders.raw import RawEncoder
    from prep.labels.embedded import EmbeddedLabels
    from prep.sources.digits import DigitsSource
    from prep.writers import WebDatasetWriter

    folder = dict(source=ImageDirSource(str(imagenet_folder.root)), labels=SpaceLabels(str(imagenet_folder.labels)))
    digits = dict(source=DigitsSource(), labels=EmbeddedLabels(), limit=20)
    cases = [
        (folder, TFRecordWriter(shard_size=10, features={"image": "encoded", "label": "label", "h": "height", "w": "width", "c": "channels"})),
        (digits, TFRecordWriter(shard_size=10, features={"image": "encoded", "label": "label"})),
        (folder, WebDatasetWriter(shard_size=10)),
    ]
    for i, (stages, writer) in enumerate(cases):
        summary = convert(name="t", splitter=NoSplit("train"), encoder=RawEncoder(), writer=writer, executor=LocalExecutor(1),
                          output_dir=str(tmp_path / f"out{i}"), progress=False, **stages)
        assert summary["num_records"] == (20 if stages is digits else len(imagenet_folder.names))
