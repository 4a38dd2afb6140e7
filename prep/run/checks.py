"""The first step of a run: the settings, the stages against each other, and the paths, checked before
anything is read or written."""

from __future__ import annotations

from prep.core.errors import ConfigError
from prep.run import outputs
from prep.run.context import Settings, Stages
from prep.run.skips import skip_limit

ON_ERROR = ("skip", "fail")


def check_run(stages: Stages, run: Settings) -> None:
    if run.on_error not in ON_ERROR:
        raise ConfigError(f"on_error={run.on_error!r}: choose one of {list(ON_ERROR)}")
    check_name(run.name)
    skip_limit(run.max_skipped, 1)
    stages.encoder.check(stages.source)
    check_readable(stages)
    inputs = input_paths(stages)
    outputs.check_not_inputs(run.output_dir, inputs)
    stages.executor.check_paths(run.output_dir, inputs)  # a multi-node Ray cluster refuses local paths


def check_readable(stages: Stages) -> None:
    """Refuse a run whose records could not be decoded back: raw pixels of images that may differ in size,
    in records that store no height and width."""
    if stages.encoder.needs_shape and not stages.source.one_shape and not stages.writer.stores_shape():
        features = stages.writer.features
        keys = ", ".join(sorted(features)) or "none"
        stored = {field for field, _ in features.values()}
        missing = " ".join(f"+features.{f}={f}" for f in ("height", "width", "channels") if f not in stored)
        raise ConfigError(
            f"encoder=raw stores pixels without their shape, and the record keys (features: {keys}) do not hold height, width "
            f"and channels: the images of {stages.source.describe()} may differ in size and colour, so no reader could rebuild "
            f"them. Store the shape: features=slim or features=imagenet_val, or add keys: {missing}"
        )


def check_name(name: str) -> None:
    """The dataset name goes into folder and shard names: a plain name, never a path."""
    if not isinstance(name, str) or not name or name in (".", "..") or any(c in name for c in "/\\\0") or not name.isprintable():
        raise ConfigError(f"name={name!r}: the dataset name must be a plain word, e.g. name=my_photos")


def input_paths(stages: Stages) -> list[str]:
    """Every file or folder the run reads, so output_dir can be checked against them."""
    return [path for path in (*stages.source.input_paths(), *stages.labels.input_paths()) if path]
