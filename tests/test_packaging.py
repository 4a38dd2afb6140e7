"""prep as users install it: a wheel that carries its configs and commands, run from a folder that is not the checkout."""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import site
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
import readme
from conftest import REPO, console_scripts, make_class_folders


def pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    with open(REPO / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def test_the_build_lists_every_package_and_config_group():
    """conf/ becomes the package prep.conf; each folder of it, and of prep/, must be listed for the build."""
    settings = pyproject()["tool"]["setuptools"]
    assert settings["package-dir"] == {"prep.conf": "conf"}
    code = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "prep").rglob("__init__.py")}
    groups = {".".join(("prep", "conf", *p.relative_to(REPO / "conf").parts)) for p in (REPO / "conf").rglob("*") if p.is_dir()}
    assert sorted(settings["packages"]) == sorted(code | groups | {"prep.conf"})


def test_configs_are_found_in_a_checkout():
    from prep.config import conf_dir

    assert Path(conf_dir()) == REPO / "conf"


@pytest.mark.parametrize("command", [c for c in console_scripts() if c != "prep"])
def test_each_tool_command_starts_its_help_with_examples(command, capsys, monkeypatch):
    module, function = console_scripts()[command].split(":")
    monkeypatch.setattr(sys, "argv", [command, "--help"])
    with pytest.raises(SystemExit) as exit:
        getattr(importlib.import_module(module), function)()
    assert exit.value.code == 0
    usage, examples = capsys.readouterr().out.split("\n\n")[:2]
    assert usage.startswith(f"usage: {command} ")
    lines = examples.splitlines()
    assert lines[0].startswith("examples") and len(lines) >= 3
    assert all(line.startswith(f"  {command} ") for line in lines[1:])


def test_next_steps_are_commands_this_shell_can_run(tmp_path, monkeypatch):
    """After a run prep names inspect and verify as the user can paste them: on PATH, beside the Python, or via -m."""
    from prep.__main__ import next_steps

    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("python", "prep-inspect", "prep-verify"):
        (bin_dir / name).write_text("#!/bin/sh\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(bin_dir / "python"))
    monkeypatch.chdir(tmp_path)
    run_dir = str(tmp_path / "outputs" / "digits" / "run 1")
    monkeypatch.setenv("PATH", str(bin_dir))  # an activated virtualenv, or pip install into the PATH
    assert [line.split("  ")[0] for line in next_steps(run_dir)] == ["prep-inspect 'outputs/digits/run 1'", "prep-verify 'outputs/digits/run 1'"]
    monkeypatch.setenv("PATH", str(tmp_path / "elsewhere"))  # make run: .venv/bin is not on PATH
    assert next_steps(run_dir)[1].startswith("venv/bin/prep-verify 'outputs/digits/run 1'  ")
    for name in ("prep-inspect", "prep-verify"):  # prep on PYTHONPATH, no commands installed
        (bin_dir / name).unlink()
    assert next_steps(run_dir)[0].startswith("venv/bin/python -m prep.inspect 'outputs/digits/run 1'  ")
    assert next_steps("s3://bucket/records")[1].startswith("venv/bin/python -m prep.verify s3://bucket/records  ")


def test_readbench_without_tensorflow_names_the_extra(tmp_path, monkeypatch, capsys):
    from prep.tools import readbench

    (tmp_path / "summary.json").write_text("{}")
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # as in an install without prep[tf]: import fails
    assert readbench.main([str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: readbench reads with tf.data, and TensorFlow is not installed") and "pip install 'prep-records[tf]'" in err


# ---- the wheel, installed into a fresh virtualenv ----

BUILD_INPUTS = ("pyproject.toml", "README.md", "prep", "conf")


def checked(command: list, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=300, **kwargs)
    assert proc.returncode == 0, f"{command} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The wheel, built the way `python -m build` builds it: an sdist from the sources, then the wheel from the
    unpacked sdist (so the sdist is complete too). setuptools from this environment: nothing is downloaded."""
    tmp = tmp_path_factory.mktemp("build")
    src = tmp / "src"
    src.mkdir()
    for name in BUILD_INPUTS:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO / name, src / name)
    backend = "import sys; from setuptools import build_meta; print(getattr(build_meta, sys.argv[1])(sys.argv[2]))"
    proc = checked([sys.executable, "-c", backend, "build_sdist", tmp / "sdist"], cwd=src)
    assert "Warning" not in proc.stderr, proc.stderr  # no deprecation warnings of our own making (license, data folders)
    sdist = tmp / "sdist" / proc.stdout.split()[-1]
    with tarfile.open(sdist) as archive:
        archive.extractall(tmp / "unpacked", **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    proc = checked([sys.executable, "-c", backend, "build_wheel", tmp / "dist"], cwd=next((tmp / "unpacked").iterdir()))
    assert "Warning" not in proc.stderr, proc.stderr
    return tmp / "dist" / proc.stdout.split()[-1]


@pytest.fixture(scope="module")
def installed(built, tmp_path_factory) -> dict:
    """A fresh virtualenv with the wheel installed (not editable). Its dependencies come from this environment:
    a .pth line puts this environment's site-packages after the venv's own (like --system-site-packages for
    a virtualenv), and the .pth files in there (an editable prep) are not run."""
    venv = tmp_path_factory.mktemp("venv")
    checked([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    purelib = Path(checked([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    dev = [*site.getsitepackages(), *([site.getusersitepackages()] if site.ENABLE_USER_SITE else [])]
    (purelib / "dev_environment.pth").write_text("\n".join(dev) + "\n")
    proc = checked([python, "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", built])
    assert "Successfully installed prep" in proc.stdout
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(PATH=os.pathsep.join([str(venv / "bin"), env.get("PATH", "")]), VIRTUAL_ENV=str(venv), PYTHONUNBUFFERED="1")
    return {"venv": venv, "purelib": purelib, "env": env, "wheel": built}


@pytest.fixture
def elsewhere(tmp_path) -> Path:
    """A user's own project folder: not the checkout, no conf/ of prep's."""
    folder = tmp_path / "my-experiments"
    folder.mkdir()
    assert REPO not in folder.parents
    return folder


def run(installed: dict, cwd: Path, *command: str) -> subprocess.CompletedProcess:
    return checked(list(command), cwd=cwd, env=installed["env"])


@pytest.mark.slow
def test_the_wheel_holds_the_code_the_configs_and_the_commands(installed):
    wheel = zipfile.ZipFile(installed["wheel"])
    names = set(wheel.namelist())
    assert {f"prep/{p.relative_to(REPO / 'prep')}" for p in (REPO / "prep").rglob("*.py")} <= names
    assert {f"prep/conf/{p.relative_to(REPO / 'conf')}" for p in (REPO / "conf").rglob("*.yaml")} <= names
    [entry_points] = [name for name in names if name.endswith(".dist-info/entry_points.txt")]
    entry_points = wheel.read(entry_points).decode()
    for command, target in console_scripts().items():
        assert f"{command} = {target}" in entry_points
        assert (installed["venv"] / "bin" / command).exists()


@pytest.mark.slow
def test_installed_prep_runs_from_another_folder(installed, elsewhere):
    where = run(installed, elsewhere, "python", "-c", "import prep, prep.config; print(prep.__file__); print(prep.config.conf_dir())")
    module, conf = where.stdout.split()
    assert Path(module).parent == installed["purelib"] / "prep"  # the wheel's copy, not the checkout's
    assert Path(conf) == installed["purelib"] / "prep" / "conf"

    help_text = run(installed, elsewhere, "prep", "--help").stdout
    assert help_text.startswith("prep: turn a folder of images")
    assert help_text.split("\n\n")[1].startswith("Examples")
    assert re.search(r"^dataset: cifar10, digits, imagenet_val, images, mnist_csv, mnist_ofrecord$", help_text, re.M)
    verify_help = run(installed, elsewhere, "prep-verify", "--help").stdout
    assert verify_help.startswith("usage: prep-verify") and "\n\nexamples:\n  prep-verify " in verify_help

    proc = run(installed, elsewhere, "prep", "progress=false")  # the digits demo
    [summary_path] = elsewhere.glob("outputs/digits/*/summary.json")
    summary = json.loads(summary_path.read_text())
    assert (summary["dataset"], summary["num_records"], len(summary["shards"])) == ("digits", 1797, 2)
    run_dir = summary_path.parent.relative_to(elsewhere)
    assert f"next: prep-inspect {run_dir}" in proc.stderr and f"prep-verify {run_dir}" in proc.stderr
    verified = run(installed, elsewhere, "prep-verify", str(run_dir))
    assert "2 of 2 shards ok" in verified.stdout
    assert "digits: 1797 tfrecord records in 2 shards" in run(installed, elsewhere, "prep-inspect", str(run_dir)).stdout


@pytest.mark.slow
def test_installed_prep_runs_the_users_own_preset(installed, elsewhere, photos):
    """README's "Your own presets" example, files and all, with an installed prep."""
    for path, text in readme.config_files().items():
        (elsewhere / path).parent.mkdir(parents=True, exist_ok=True)
        (elsewhere / path).write_text(text)
    names = make_class_folders(elsewhere / "data" / "flowers", photos)

    help_text = run(installed, elsewhere, "prep", "--config-dir", "conf", "--help").stdout
    assert re.search(r"^dataset: cifar10, digits, flowers, imagenet_val, ", help_text, re.M)
    assert re.search(r"^writer: arrayrecord, my_tfrecord, ofrecord, tfrecord, webdataset$", help_text, re.M)

    run(installed, elsewhere, "prep", "--config-dir", "conf", "dataset=flowers", "progress=false")
    [summary_path] = elsewhere.glob("outputs/flowers/*/summary.json")
    summary = json.loads(summary_path.read_text())
    assert summary["num_records"] == len(names) == 30
    assert summary["label_map"] == {"daisy": 0, "rose": 1, "tulip": 2}
    assert {name: split["num_records"] for name, split in summary["splits"].items()} == {"train": 24, "validation": 6}
    assert summary["compression"] == "gzip"  # the user's writer choice
    assert sorted(s["path"] for s in summary["shards"]) == [f"{split}/flowers-{i:05d}-of-00004.tfrecord.gz" for split in ("train", "validation") for i in range(4)]
    assert "8 of 8 shards ok" in run(installed, elsewhere, "prep-verify", str(summary_path.parent)).stdout
