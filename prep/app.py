"""Turns a composed Hydra config into stages and runs the pipeline; the seam between YAML and Python."""

from __future__ import annotations

import difflib
import hashlib
import importlib
import inspect
import json
import logging

from omegaconf import DictConfig, OmegaConf

from prep.config import RUNTIME_KEYS
from prep.core.errors import ConfigError, PrepError
from prep.pipeline import convert

log = logging.getLogger(__name__)
STAGES = ("source", "labels", "split", "encoder", "writer", "executor")


def build(node: DictConfig, group: str):
    """Instantiate one stage from its `_target_`, with our own errors unwrapped from Hydra's."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    log.debug("building %s: %s", group, node.get("_target_"))
    check_keys(node, group)
    try:
        return instantiate(node, _convert_="object")
    except InstantiationException as err:
        cause = err.__cause__
        while cause is not None and not isinstance(cause, PrepError):
            cause = cause.__cause__
        if cause is not None:
            raise cause from None
        raise


def check_keys(node: DictConfig, group: str) -> None:
    """Every key of a stage's config must be an argument of its class: `+encoder.qualty=50` (Hydra's own
    suggestion for a typo) would otherwise reach the constructor as a TypeError."""
    target = node.get("_target_")
    if not isinstance(target, str):
        raise ConfigError(f"{group}: no _target_; choose one of the {group} choices (prep --help lists them)")
    module, _, name = target.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        cls = None
    if not inspect.isclass(cls):
        raise ConfigError(f"{group}._target_={target!r}: no such class")
    params = [p for p in inspect.signature(cls).parameters if p != "self"]
    for key in node:
        if isinstance(key, str) and not key.startswith("_") and key not in params:
            close = difflib.get_close_matches(key, params, n=1)
            hint = f"did you mean {group}.{close[0]}? " if close else ""
            raise ConfigError(f"{group}.{key}: not a setting of {group} ({target.rsplit('.', 1)[-1]}); {hint}its settings are {params}")


def fingerprint(cfg: DictConfig) -> str:
    """sha256 of the resolved config without the keys that only say where and how it runs."""
    data = OmegaConf.to_container(cfg, resolve=False)
    for key in (*RUNTIME_KEYS, "hydra"):
        data.pop(key, None)
    resolved = OmegaConf.to_container(OmegaConf.merge(OmegaConf.create(data), {}), resolve=True)
    return "sha256:" + hashlib.sha256(json.dumps(resolved, sort_keys=True).encode()).hexdigest()


def check_top_level(cfg: DictConfig) -> None:
    """`+limt=3` adds a key nothing reads: name it, as check_keys does for a stage's keys."""
    from dataclasses import fields

    from prep.config import PrepConf

    known = [f.name for f in fields(PrepConf)]
    for key in cfg:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise ConfigError(f"{key}: not a setting of prep; {hint}the top-level settings are {[k for k in known if k not in STAGES]}")


def run(cfg: DictConfig, overrides: list[str] | None = None, on_claim=None) -> dict:
    from omegaconf.errors import OmegaConfBaseException

    try:
        return _run(cfg, overrides, on_claim)
    except OmegaConfBaseException as err:  # a value that cannot be read: a deleted (~key) or missing key
        raise ConfigError(" ".join(line.strip() for line in str(err).splitlines() if line.strip())) from None


def _run(cfg: DictConfig, overrides: list[str] | None, on_claim) -> dict:
    check_top_level(cfg)
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
        dry_run=cfg.dry_run,
        run_info={"overrides": list(overrides or []), "config_fingerprint": fingerprint(cfg)},
        on_claim=on_claim,
    )
