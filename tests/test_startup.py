"""Start-up: what prep's commands import and how often Hydra composes, checked in subprocesses (never timed).

`make bench` times start-up (benchmarks/bench_startup.py); these tests keep the causes away: `--help` of every
command imports none of the heavy libraries, a run composes its config once, and the help Hydra prints is
the same text with prep's shortcut as without it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO, console_scripts, make_class_folders
from omegaconf import OmegaConf

# Libraries that cost 50 ms to seconds to import and that no --help needs.
HEAVY = ("numpy", "cv2", "pandas", "sklearn", "tensorflow", "ray", "google.protobuf", "torch", "PIL", "tqdm")
# Never imported by a run of prep: pandas by nothing at all, sklearn only for the digits demo where
# scikit-learn's CSV file cannot be read directly, the rest only by the executors and writers that need them.
NEVER_IN_A_RUN = ("pandas", "sklearn", "tensorflow", "ray", "google.protobuf", "torch", "PIL")

# Runs one console script as pip's wrapper does (`from module import function; function()`) and prints, when
# the process ends, every imported module and how many times Hydra composed a config and copied its config
# repository (prep only: counting needs Hydra imported first, which is what the other tools must not do).
PROBE = """
import atexit, importlib, json, sys

command, target, count = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
counts = {"compositions": 0, "repository_copies": 0}
if count:
    from hydra._internal import config_loader_impl, config_repository

    def counted(cls, name, key):
        original = getattr(cls, name)

        def wrapper(*args, **kwargs):
            counts[key] += 1
            return original(*args, **kwargs)

        setattr(cls, name, wrapper)

    counted(config_loader_impl.ConfigLoaderImpl, "_load_configuration_impl", "compositions")
    counted(config_repository.CachingConfigRepository, "__init__", "repository_copies")


def report():
    with open(REPORT, "w") as f:
        json.dump({"modules": sorted(sys.modules), **counts}, f)


atexit.register(report)
sys.argv = [command, *sys.argv[4:]]
module, function = target.split(":")
getattr(importlib.import_module(module), function)()
"""


def probe(tmp_path, command: str, *args: str, cwd=None) -> dict:
    """Run a console script in a subprocess; its imported modules and Hydra's work, as PROBE reports them."""
    report = tmp_path / f"probe-{command}.json"
    code = f"REPORT = {str(report)!r}\n{PROBE}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    count = "1" if command == "prep" else "0"
    proc = subprocess.run(
        [sys.executable, "-c", code, command, console_scripts()[command], count, *args],
        cwd=cwd or tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(report.read_text())
    result["stdout"] = proc.stdout
    return result


def imported(modules: list[str], names) -> list[str]:
    return sorted({name for name in names for module in modules if module == name or module.startswith(name + ".")})


def test_prep_help_composes_once_and_imports_nothing_heavy(tmp_path):
    result = probe(tmp_path, "prep", "--help")
    assert result["stdout"].startswith("prep: turn a folder of images")
    assert imported(result["modules"], HEAVY) == []
    assert not any(m.startswith(("prep.pipeline", "prep.writers", "prep.report", "prep.run", "prep.tools.report")) for m in result["modules"])
    # One composition for the config shown, one repository copy for it and one for listing every group
    # (Hydra alone: two compositions' worth of work and a copy per group, about 130).
    assert (result["compositions"], result["repository_copies"]) == (1, 2)


@pytest.mark.parametrize("command", [c for c in console_scripts() if c != "prep"])
def test_each_tools_help_imports_neither_hydra_nor_anything_heavy(tmp_path, command):
    result = probe(tmp_path, command, "--help")
    assert result["stdout"].startswith(f"usage: {command} ")
    assert imported(result["modules"], (*HEAVY, "hydra", "omegaconf")) == []


def test_a_small_run_composes_once_and_imports_only_what_it_needs(tmp_path, photos):
    names = make_class_folders(tmp_path / "images", photos, per_class=4)
    out = tmp_path / "run"
    args = ("dataset=images", f"source.image_dir={tmp_path / 'images'}", "labels=subdirs", f"hydra.run.dir={out}", "progress=false")
    result = probe(tmp_path, "prep", *args)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_records"] == len(names) == 12
    assert imported(result["modules"], NEVER_IN_A_RUN) == []
    assert (result["compositions"], result["repository_copies"]) == (1, 1)
    # The one composition is the run's whole config: the saved .hydra/ files are Hydra's, mode and overrides included.
    hydra = OmegaConf.load(out / ".hydra" / "hydra.yaml").hydra
    assert hydra.mode == "RUN" and list(hydra.overrides.hydra)[-1] == "hydra.mode=RUN"
    assert list(OmegaConf.load(out / ".hydra" / "overrides.yaml")) == [a for a in args if not a.startswith("hydra.")]


def test_the_digits_demo_does_not_import_scikit_learn(tmp_path):
    out = tmp_path / "run"
    result = probe(tmp_path, "prep", "limit=20", f"hydra.run.dir={out}", "progress=false")
    assert json.loads((out / "summary.json").read_text())["num_records"] == 20
    assert imported(result["modules"], NEVER_IN_A_RUN) == []


@pytest.fixture
def hydra_app():
    """Hydra as `prep` starts it (prep's conf/ and the settings every run gets), without running a job."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from prep.__main__ import FORCED
    from prep.config import conf_dir

    with initialize_config_dir(config_dir=conf_dir(), version_base="1.3", job_name="prep"):
        yield GlobalHydra.instance().hydra, list(FORCED)


def test_the_kept_composition_equals_hydras_own(hydra_app):
    from hydra.types import RunMode

    from prep.__main__ import compose_once

    hydra, forced = hydra_app
    overrides = ["dataset=images", "source.image_dir=/data", "labels=space", "labels.path=/data/val.txt", *forced]
    with compose_once():
        assert hydra.get_mode("config", overrides) is None  # prep's configs leave hydra.mode unset
        kept = hydra.config_loader.load_configuration("config", [*overrides, "hydra.mode=RUN"], RunMode.RUN)
        again = hydra.config_loader.load_configuration("config", [*overrides, "hydra.mode=RUN"], RunMode.RUN)
    own = hydra.config_loader.load_configuration("config", [*overrides, "hydra.mode=RUN"], RunMode.RUN)
    assert kept is not again  # kept for the one run that asks for it, then composed afresh
    assert OmegaConf.to_yaml(kept) == OmegaConf.to_yaml(own) == OmegaConf.to_yaml(again)
    assert kept.hydra.mode == RunMode.RUN and kept.source.image_dir == "/data"


def test_what_hydra_decides_itself_is_left_to_hydra(hydra_app):
    from hydra.errors import ConfigCompositionException
    from hydra.types import RunMode

    from prep.__main__ import compose_once

    hydra, forced = hydra_app
    with compose_once():
        # A mode set in the config (here on the command line) is Hydra's answer; a sweep without -m composes
        # only as a multirun; a config that does not compose is reported by the run, as Hydra does.
        assert hydra.get_mode("config", ["hydra.mode=MULTIRUN", *forced]) == RunMode.MULTIRUN
        assert hydra.get_mode("config", ["hydra.mode=MULTIRUN", "limit=1,2", *forced]) == RunMode.MULTIRUN
        assert hydra.get_mode("config", ["writer=nosuch", *forced]) is None
        with pytest.raises(ConfigCompositionException, match="nosuch"):
            hydra.config_loader.load_configuration("config", ["writer=nosuch", *forced, "hydra.mode=RUN"], RunMode.RUN)


def test_help_lists_the_groups_hydra_lists(hydra_app):
    """--help's group list (Hydra's get_help formats it) from one repository copy: the same text as Hydra's own."""
    from prep.__main__ import compose_once

    hydra, _ = hydra_app
    with compose_once():
        fast = hydra.format_config_groups(lambda group: True)
    assert fast == hydra.format_config_groups(lambda group: True)
    lines = fast.splitlines()
    assert "dataset: cifar10, digits, imagenet_val, images, mnist_csv, mnist_ofrecord" in lines
    assert "hydra/job_logging: default, disabled, none, prep, stdout" in lines


def test_startup_bench_table_names_the_targets():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import bench_startup
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    results = {bench_startup.HELP: [(1.04, 1.0), (0.32, 0.3)], bench_startup.RUN: [(1.2, 1.5), (1.1, 1.4)]}
    text = bench_startup.report(10, baseline=REPO / "before", results=results)
    assert "| prep --help | 1.040 | 0.320 | 3.25x | 1.000 | 0.300 |" in text
    assert "| `prep --help` < 0.5 s | 0.32 s | yes |" in text and "| a 10-image run < 1.0 s | 1.10 s | **no** |" in text


@pytest.mark.slow
def test_startup_bench_runs_every_command():
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_startup.py"), "--repeat", "1"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = [line.split(" | ")[0].lstrip("| ") for line in proc.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[:7] == ["command", "python -c pass (the interpreter alone)", "prep --help", "prep-verify --help", "prep-inspect --help", "prep-readbench --help", "prep-report --help"]
    assert "prep dataset=images, 10 JPEGs" in rows[7]
