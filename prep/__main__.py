"""`python -m prep [overrides]`: compose the config with Hydra and run the conversion."""

import logging
import os
import signal
import sys

import hydra
from omegaconf import DictConfig

from prep.config import register

log = logging.getLogger("prep")
register()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    from prep.app import run
    from prep.errors import PrepError

    try:
        run(cfg, overrides=list(HydraConfig.get().overrides.task))
    except PrepError as err:
        # A user mistake: one line (also in the run's log file), no traceback.
        log.error("error: %s", err)
        sys.exit(1)
    except KeyboardInterrupt:
        log.error("interrupted: no summary.json was written; finished shards are kept, rerun with resume=true to finish")
        sys.exit(130)
    except Exception:
        # A bug in prep: keep the traceback, on the terminal and in the run's log file.
        log.exception("internal error: please report this with the log above")
        sys.exit(2)


def _interrupt(signum, frame):
    # SIGTERM (a scheduler, `kill`) takes the same path as Ctrl-C, so partial shards are cleaned up.
    raise KeyboardInterrupt


def _absolute_config_paths(argv: list[str]) -> list[str]:
    """Hydra reads a relative --config-path against prep's own source folder; users mean their working directory."""
    out = list(argv)
    for i, arg in enumerate(out):
        for flag in ("--config-path", "-cp", "--config-dir", "-cd"):
            if arg == flag and i + 1 < len(out) and os.path.isdir(out[i + 1]):
                out[i + 1] = os.path.abspath(out[i + 1])
            elif arg.startswith(flag + "=") and os.path.isdir(arg[len(flag) + 1 :]):
                out[i] = f"{flag}={os.path.abspath(arg[len(flag) + 1:])}"
    return out


if __name__ == "__main__":
    sys.argv = _absolute_config_paths(sys.argv)
    signal.signal(signal.SIGTERM, _interrupt)
    main()
