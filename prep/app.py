"""Turns a composed Hydra config into stages and runs the pipeline; the seam between YAML and Python."""

from __future__ import annotations

import hashlib
import json
import logging

from omegaconf import DictConfig, OmegaConf

from prep.config import RUNTIME_KEYS
from prep.errors import PrepError
from prep.pipeline import convert

log = logging.getLogger(__name__)
STAGES = ("source", "labels", "split", "encoder", "writer", "executor")


def build(node: DictConfig, group: str):
    """Instantiate one stage from its `_target_`, with our own errors unwrapped from Hydra's."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    log.debug("building %s: %s", group, node.get("_target_"))
    try:
        return instantiate(node, _convert_="object")
    except InstantiationException as err:
        cause = err.__cause__
        while cause is not None and not isinstance(cause, PrepError):
            cause = cause.__cause__
        if cause is not None:
            raise cause from None
        raise


def fingerprint(cfg: DictConfig) -> str:
    """sha256 of the resolved config without the keys that only say where and how it runs."""
    data = OmegaConf.to_container(cfg, resolve=False)
    for key in (*RUNTIME_KEYS, "hydra"):
        data.pop(key, None)
    resolved = OmegaConf.to_container(OmegaConf.merge(OmegaConf.create(data), {}), resolve=True)
    return "sha256:" + hashlib.sha256(json.dumps(resolved, sort_keys=True).encode()).hexdigest()


def run(cfg: DictConfig, overrides: list[str] | None = None) -> dict:
    stages = {group: build(cfg[group], group) for group in STAGES}
    return convert(
        name=cfg.name,
        source=stages["source"],
        labels=stages["labels"],
        splitter=stages["split"],
        encoder=stages["encoder"],
        writer=stages["writer"],
        executor=stages["executor"],
        output_dir=cfg.output_dir,
        limit=cfg.limit,
        on_error=cfg.on_error,
        max_skipped=cfg.max_skipped,
        overwrite=cfg.overwrite,
        resume=cfg.resume,
        verify=cfg.verify,
        progress=cfg.progress,
        run_info={"overrides": list(overrides or []), "config_fingerprint": fingerprint(cfg)},
    )
