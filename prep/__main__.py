"""`python -m prep [overrides]`: compose the config with Hydra and run the conversion."""

import logging
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
        log.error("interrupted: no summary.json was written, the output is incomplete")
        sys.exit(130)


if __name__ == "__main__":
    main()
