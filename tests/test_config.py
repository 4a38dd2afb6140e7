"""Every preset and every group choice composes and builds its stages, without running anything."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from prep.app import STAGES, build, fingerprint
from prep.config import register

CONF = Path(__file__).resolve().parent.parent / "conf"
register()


def choices(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def composed(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=True)


def stages_of(cfg):
    from hydra.core.hydra_config import HydraConfig

    HydraConfig.instance().set_config(cfg)
    return {group: build(cfg[group], group) for group in STAGES}


@pytest.mark.parametrize("preset", choices("dataset"))
def test_every_preset_composes_and_builds(preset, tmp_path):
    cfg = composed(f"dataset={preset}")
    if "image_dir" in cfg.source:
        cfg = composed(f"dataset={preset}", f"source.image_dir={tmp_path}")
    if "path" in cfg.source:
        cfg = composed(f"dataset={preset}", f"source.path={tmp_path / 'rows.csv'}")
    assert cfg.name == preset
    stages = stages_of(cfg)
    assert stages["writer"].features


@pytest.mark.parametrize("group", [g for g in STAGES if g != "source"])
def test_every_choice_of_every_group_composes(group):
    for choice in choices(group):
        cfg = composed(f"{group}={choice}")
        assert cfg[group]._target_.startswith("prep.")
        stages_of(cfg)


def test_every_feature_set_builds_with_its_writer():
    writer = {"oneflow": "ofrecord"}
    for choice in choices("features"):
        stages = stages_of(composed(f"features={choice}", f"writer={writer.get(choice, 'tfrecord')}"))
        assert stages["writer"].features


def test_imagenet_val_preset_reproduces_seed_002_settings():
    cfg = composed("dataset=imagenet_val")
    assert cfg.writer.shard_size == 5000
    assert cfg.writer.pattern == "data_{index}.tfrecord"
    assert OmegaConf.to_container(cfg.features) == {"image": "encoded", "label": "label", "height": "height", "width": "width", "chans": "channels"}
    assert cfg.encoder._target_ == "prep.encoders.PassthroughEncoder"
    assert cfg.labels._target_ == "prep.labels.SpaceLabels"
    assert cfg.split.name == "validation"


def test_command_line_group_choice_beats_the_preset():
    assert composed("dataset=imagenet_val", "encoder=jpeg").encoder.format == "jpeg"


def test_fingerprint_ignores_where_it_runs_but_not_what_it_writes():
    base = composed()
    stages_of(base)
    assert fingerprint(base) == fingerprint(composed("executor.workers=1", "output_dir=/elsewhere", "overwrite=true"))
    assert fingerprint(base) != fingerprint(composed("writer.shard_size=7"))


GROUPS = ("source", "labels", "split", "encoder", "writer", "executor", "features")


@pytest.mark.parametrize("preset", choices("dataset"))
def test_every_preset_takes_every_choice_of_every_group_or_says_why_in_one_line(preset):
    """A preset's own settings may not fit another choice of a group (dataset=cifar10 sets split.val; split=none
    has none): then the line names the preset, the setting, the choice and what to do. The natural overrides
    compose (dataset=imagenet_val split=stratified, any writer, any encoder, any executor)."""
    from prep.__main__ import _hydra_message

    refused = []
    for group in GROUPS:
        for choice in choices(group):
            try:
                cfg = composed(f"dataset={preset}", f"{group}={choice}")
            except Exception as err:  # noqa: BLE001 - what the CLI prints for it is what is checked
                line = _hydra_message(err)
                assert line.startswith(f"dataset={preset} sets {group}.") and "does not have" in line and "dataset=images" in line, line
                refused.append(f"{group}={choice}")
                continue
            assert OmegaConf.select(cfg, f"{group}._target_") or group == "features"
    assert not [r for r in refused if r.split("=")[0] in ("writer", "encoder", "executor", "features")], refused
    if preset == "imagenet_val":
        assert "split=stratified" not in refused


def test_imagenet_val_with_a_stratified_split_composes_to_the_stratified_splitter():
    cfg = composed("dataset=imagenet_val", "split=stratified")
    assert cfg.split._target_.endswith("StratifiedSplit") and "name" not in cfg.split
    assert composed("dataset=imagenet_val").split.name == "validation"
