"""`prep [overrides]` (or `python -m prep`): compose the config with Hydra and run the conversion."""

import logging
import os
import shlex
import shutil
import sys
from contextlib import contextmanager

from prep.core import interrupts

if __name__ == "__main__" or os.path.basename(sys.argv[0]) == "prep":  # python -m prep, or the prep command
    interrupts.starting()  # a Ctrl-C while the imports below load is one line, not a traceback

import hydra  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from prep.config import conf_dir, register  # noqa: E402

log = logging.getLogger("prep")
register()

# Hydra settings every run needs, even a rerun from a saved .hydra/config.yaml (which carries no hydra
# settings): Hydra must not write .hydra/ or a log file itself, before prep knows the folder is its to use.
FORCED = ("hydra.output_subdir=null", "hydra/job_logging=prep", "hydra.job.name=prep")


# The runs this process finished (a sweep runs several): a Ctrl-C between them says what stands.
finished_runs: list[str] = []


# An absolute config path: the same conf/ whether prep runs from a checkout or an installed wheel.
@hydra.main(version_base="1.3", config_path=conf_dir(), config_name="config")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    from prep.app import run
    from prep.core.errors import PrepError
    from prep.run import logfile as runlog

    hydra_cfg = HydraConfig.get()
    run_dir = hydra_cfg.runtime.output_dir
    handler = runlog.RunLog()
    logging.getLogger().addHandler(handler)
    claimed = False

    def claim() -> None:
        # The run holds output_dir now (locked; empty, resumable or replaceable): its config and log go in
        # the run folder if that is output_dir, or a run folder nobody has used.
        nonlocal claimed
        claimed = True
        if os.path.realpath(run_dir) == os.path.realpath(str(cfg.output_dir)) or runlog.is_fresh(run_dir):
            runlog.save_config(run_dir, cfg, hydra_cfg)
            handler.open(os.path.join(run_dir, "prep.log"))
        else:
            log.warning("%s holds an earlier run's files: this run's config and log are not saved there", run_dir)

    def keep_log_of_failure() -> None:
        # A run that stopped before it held its folder leaves its log only where nothing else lives.
        if not claimed and runlog.is_fresh(run_dir):
            runlog.save_config(run_dir, cfg, hydra_cfg)
            handler.open(os.path.join(run_dir, "prep.log"))

    from hydra.types import RunMode

    sweeping = hydra_cfg.mode == RunMode.MULTIRUN

    def fail(status: int) -> None:
        # In a sweep one failed job must not stop the others: the sweep table marks it failed and the
        # command exits non-zero at the end (prep.sweep); a single run exits now.
        if not sweeping:
            sys.exit(status)

    try:
        # unresolved: an override's text may hold an interpolation (`output_dir=${oc.env:X}`) that cannot resolve
        run(cfg, overrides=OmegaConf.to_container(hydra_cfg.overrides.task, resolve=False), on_claim=claim)
    except PrepError as err:
        # A user mistake: one line (also in the run's log file), no traceback.
        log.error("error: %s", err)
        keep_log_of_failure()
        fail(1)
    except KeyboardInterrupt:
        from prep.core import storage
        from prep.runfiles.names import MANIFEST

        if storage.exists(storage.join(str(cfg.output_dir), MANIFEST)):  # an unfinished run is there
            log.error("interrupted: no summary.json was written; finished shards are kept, rerun with resume=true to finish")
        else:  # planning, the content scan, a dry run: no shard was started
            log.error("interrupted before any shard was written: there is nothing to resume")
        interrupts.leaving()
        sys.exit(130)
    except OSError as err:
        # The file system said no (disk or inodes full, permissions, a read-only folder): not a bug in prep.
        where = f"{err.filename}: " if err.filename else ""
        log.error("error: %s%s", where, err.strerror or err)
        log.debug("details", exc_info=True)
        keep_log_of_failure()
        fail(1)
    except Exception:
        # A bug in prep: keep the traceback, on the terminal and in the run's log file.
        log.exception("internal error: please report this with the log above")
        keep_log_of_failure()
        fail(2)
    else:
        if not cfg.get("dry_run"):
            finished_runs.append(str(cfg.output_dir))
        if not sweeping:
            interrupts.uninstall()  # summary.json is written: a Ctrl-C from now on only ends the process
        if cfg.get("dry_run"):
            log.info("next: the same command without dry_run=true converts as planned")
        elif not sweeping:  # a sweep ends with its own table instead
            inspect, verify = next_steps(str(cfg.output_dir))
            log.info("next: %s", inspect)
            log.info("      %s", verify)
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()


def next_steps(output_dir: str) -> list[str]:
    """The two commands worth running on a finished run, as they can be pasted into this shell."""
    where = output_dir if "://" in output_dir else _short(os.path.abspath(output_dir))
    where = shlex.quote(where)
    return [
        f"{tool_command('inspect')} {where}   # the first records: labels, shapes, class names",
        f"{tool_command('verify')} {where}    # re-read every shard, check it against summary.json",
    ]


def tool_command(tool: str) -> str:
    """`prep-<tool>` when that command is on PATH; else its path beside this Python; else `python -m prep.<tool>`."""
    name = f"prep-{tool}"
    beside = os.path.join(os.path.dirname(sys.executable), name)
    found = shutil.which(name)
    if found and os.path.abspath(found) == os.path.abspath(beside):
        return name
    if os.path.isfile(beside):
        return shlex.quote(_short(beside))
    python = shutil.which("python")
    python = "python" if python and os.path.abspath(python) == os.path.abspath(sys.executable) else _short(sys.executable)
    return f"{shlex.quote(python)} -m prep.{tool}"


def _short(path: str) -> str:
    """A path relative to the working directory when it lies inside it (`.venv/bin/prep-verify`)."""
    relative = os.path.relpath(path)
    return path if relative == os.pardir or relative.startswith(os.pardir + os.sep) else relative


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


def _with_forced(argv: list[str]) -> list[str]:
    """FORCED settings added unless the user set the same key, right after the user's last override: Hydra's
    argument parser takes overrides as one run, so `prep split=stratified --cfg job` must not end in more."""
    given = {arg.split("=", 1)[0].lstrip("+~") for arg in argv[1:]}
    forced = [o for o in FORCED if o.split("=", 1)[0] not in given]
    overrides = [i for i, arg in enumerate(argv) if i and "=" in arg and not arg.startswith("-")]
    at = overrides[-1] + 1 if overrides else len(argv)
    return argv[:at] + forced + argv[at:]


def cli() -> None:
    """The `prep` command and `python -m prep`: one path, so both take the same overrides and Hydra flags."""
    sys.argv = _with_forced(_absolute_config_paths(sys.argv))
    interrupts.install()  # SIGTERM (a scheduler, `kill`) takes Ctrl-C's path, so partial shards are cleaned up
    # Hydra reports its own errors (an override it cannot apply, a run folder it cannot create) with a
    # partial traceback; asked to re-raise them instead, prep prints one line. HYDRA_FULL_ERROR=1 set by
    # the user still shows everything.
    full = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        with compose_once(multirun=any(arg in ("-m", "--multirun") for arg in sys.argv[1:])):
            main()
    except KeyboardInterrupt:
        # Ctrl-C outside a run (composing the config, importing, between a sweep's jobs): the run under way, if
        # any, said so itself.
        if finished_runs:
            print(f"interrupted: {len(finished_runs)} run(s) had finished, each with its summary.json: {', '.join(finished_runs)}", file=sys.stderr)
        else:
            print("interrupted before the run started: nothing was written", file=sys.stderr)
        interrupts.leaving()
        sys.exit(130)
    except BrokenPipeError:
        # `prep --help | head`: the reader left; Python's advice is to point stdout at devnull, not to trace back.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    except Exception as err:  # noqa: BLE001 - whatever Hydra raises before or around the job is reported, not traced
        if full:
            raise
        print(f"error: {_hydra_message(err)}", file=sys.stderr)
        sys.exit(1)
    interrupts.uninstall()  # every run is over: a Ctrl-C from now on only ends the process
    from prep import sweep

    if sweep.failed_jobs:
        print(f"error: {sweep.failed_jobs} job(s) of the sweep failed; the table above says which", file=sys.stderr)
        sys.exit(1)


@contextmanager
def compose_once(multirun: bool = False):
    """Hydra 1.3 composes a run's config twice (once only to read `hydra.mode`, then again to run it), and
    `--help` lists the config groups by deep-copying its whole config repository once per group (about 130
    copies): together most of prep's start-up. Within this block a run composes once, the help lists the groups
    from one copy, and everything else (a config that sets hydra.mode, one that does not compose, a sweep) takes
    Hydra's own path with Hydra's own messages. Hydra's methods are restored on the way out."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.hydra import Hydra
    from hydra.core.object_type import ObjectType
    from hydra.types import RunMode

    get_mode = Hydra.get_mode
    load_configuration = ConfigLoaderImpl.load_configuration
    get_group_options = ConfigLoaderImpl.get_group_options
    composed: dict[tuple, object] = {}  # (loader, config_name, overrides) -> the run's config, used once
    repositories: dict[int, tuple] = {}  # id(loader) -> (loader, one copy of its config repository)

    def get_mode_composing_the_run(self, config_name, overrides):
        # The composition hydra.run would make next (the same call), kept for it. Hydra's get_mode composes as
        # a multirun only to read hydra.mode, which prep's configs never set: None, and Hydra runs the job
        # with the override hydra.mode=RUN appended, whose effect on the config is applied here.
        try:
            cfg = load_configuration(self.config_loader, config_name=config_name, overrides=overrides, run_mode=RunMode.RUN)
        except Exception:  # noqa: BLE001 - Hydra's own path: its get_mode swallows this, its run reports it
            return get_mode(self, config_name, overrides)
        if cfg.hydra.mode is not None:
            return cfg.hydra.mode
        cfg.hydra.mode = RunMode.RUN
        cfg.hydra.overrides.hydra.append("hydra.mode=RUN")
        composed[(id(self.config_loader), config_name, (*overrides, "hydra.mode=RUN"))] = cfg
        return None

    def load_configuration_once(self, config_name, overrides, run_mode, from_shell=True, validate_sweep_overrides=True):
        key = (id(self), config_name, tuple(overrides))
        if run_mode == RunMode.RUN and from_shell and validate_sweep_overrides and key in composed:
            return composed.pop(key)
        return load_configuration(self, config_name, overrides, run_mode, from_shell, validate_sweep_overrides)

    def get_group_options_from_one_copy(self, group_name, results_filter=ObjectType.CONFIG, config_name=None, overrides=None):
        if config_name is not None or overrides:
            return get_group_options(self, group_name, results_filter, config_name, overrides)
        if id(self) not in repositories:
            repositories[id(self)] = (self, self._parse_overrides_and_create_caching_repo(None, [])[1])
        return repositories[id(self)][1].get_group_options(group_name, results_filter)

    if not multirun:  # a sweep composes as a multirun anyway: Hydra's get_mode is already the one composition
        Hydra.get_mode = get_mode_composing_the_run
    ConfigLoaderImpl.load_configuration = load_configuration_once
    ConfigLoaderImpl.get_group_options = get_group_options_from_one_copy
    try:
        yield
    finally:
        Hydra.get_mode = get_mode
        ConfigLoaderImpl.load_configuration = load_configuration
        ConfigLoaderImpl.get_group_options = get_group_options


def _hydra_message(err: Exception) -> str:
    """What Hydra could not do, in its own words, without the stack."""
    if isinstance(err, OSError):
        return f"{err.filename}: {err.strerror}" if err.filename and err.strerror else str(err)
    cause = err
    while getattr(cause, "__cause__", None) is not None and not str(cause).strip():
        cause = cause.__cause__
    text = " ".join(line.strip() for line in str(cause).splitlines() if line.strip()) or type(cause).__name__
    return preset_conflict(text) or text


def preset_conflict(text: str) -> str | None:
    """A preset's setting that the group choice given on the command line does not have (dataset=cifar10 sets
    split.val; split=none has no val): what Hydra says, as the user's choice and what to do about it."""
    import re

    found = re.search(r"In 'dataset/([^']+)': ConfigKeyError raised while composing config: Key '([^']+)' not in '(\w+?)(?:Conf)?' full_key: (\S+)", text)
    if found is None:
        return None
    preset, key, schema, full_key = found.groups()
    group = full_key.split(".")[0]
    return (
        f"dataset={preset} sets {full_key}, a setting the {group} you chose ({schema}) does not have: keep the preset's "
        f"{group}, or start from dataset=images (no preset settings) and give the {group} you want its own settings"
    )


if __name__ == "__main__":
    cli()
