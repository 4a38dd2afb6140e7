"""A run folder is prep's alone: no write, read or delete follows a link planted inside it, and another
program's files (plan.json, prep.log, .hydra/) are never taken for prep's.

The victims live outside the run folder; every test checks them byte for byte afterwards."""

from __future__ import annotations

import json
import os

import pytest
from conftest import run_prep
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_output_safety import shard_task_dies

from prep.core import nofollow
from prep.core.errors import ConfigError
from prep.encoders.image import ImageEncoder
from prep.executors.local import LocalExecutor
from prep.labels.embedded import EmbeddedLabels
from prep.pipeline import convert
from prep.run import outputs
from prep.sources.digits import DigitsSource
from prep.split import NoSplit, StratifiedSplit
from prep.writers import TFRecordWriter, WebDatasetWriter

FEATURES = {"image": "encoded", "label": "label", "image/filename": "filename"}
SHARD = "t-train.tfrecord-00000-of-00003"


def _run(out, *, limit=30, splitter=None, writer=None, **kwargs) -> dict:
    return convert(
        name="t", source=DigitsSource(), labels=EmbeddedLabels(), splitter=splitter or NoSplit("train"), encoder=ImageEncoder("png"),
        writer=writer or TFRecordWriter(shard_size=10, features=FEATURES, dali_index=True), executor=LocalExecutor(1),
        output_dir=str(out), limit=limit, progress=False, **kwargs,
    )


def _victim(tmp_path, name="victim.txt"):
    victim = tmp_path / "outside" / name
    victim.parent.mkdir(exist_ok=True)
    victim.write_bytes(b"another user's file\n")
    return victim


def _plant(out, rel, target):
    link = out / rel
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target)


# Every temporary name a run writes in its folder (the shard's own and its DALI index's among them).
PARTIALS = [
    "summary.json.partial", "plan.json.partial", "report.html.partial", "labels.csv.partial", "dataset_info.json.partial",
    "features.json.partial", ".prep-manifest/run.json.partial", f"{SHARD}.partial", f"{SHARD}.idx.partial",
]


# The names a run goes ahead with (prep's own: in its manifest's folder, or recorded as a shard's side file);
# a link at any other name is a file in the way, and the run is refused.
GO_AHEAD = {"overwrite": set(), "resume": {".prep-manifest/run.json.partial", f"{SHARD}.partial", f"{SHARD}.idx.partial"}}


@pytest.mark.parametrize("rel", PARTIALS)
@pytest.mark.parametrize("mode", ["overwrite", "resume"])
def test_a_link_planted_at_a_temporary_name_is_never_written_through(tmp_path, rel, mode):
    out = tmp_path / "out"
    victim = _victim(tmp_path)
    if mode == "overwrite":
        _run(out)
    else:
        with shard_task_dies(1):
            _run(out)
    _plant(out, rel, victim)
    try:
        summary = _run(out, **{mode: True})
    except ConfigError as err:  # a link where prep records nothing is a file in the way: refused, untouched
        assert "is not empty" in str(err) and rel not in GO_AHEAD[mode]
        assert (out / rel).is_symlink()
    else:
        assert summary["num_records"] == 30 and (out / "summary.json").is_file() and not (out / "summary.json").is_symlink()
        # a link at a name the run wrote was replaced by prep's own file; one at a name it did not need is left
        # (prep deletes only regular files), never followed
    assert victim.read_bytes() == b"another user's file\n"


def test_a_dry_run_writes_no_plan_through_a_planted_link(tmp_path):
    out = tmp_path / "out"
    victim = _victim(tmp_path)
    _run(out, dry_run=True)  # a dry run's folder: plan.json, marked as prep's
    _plant(out, "plan.json.partial", victim)
    with pytest.raises(ConfigError, match=r"is not empty \(plan.json.partial\)"):  # a file in the way
        _run(out, dry_run=True)
    assert victim.read_bytes() == b"another user's file\n" and json.loads((out / "plan.json").read_text())["dataset"] == "t"


@pytest.mark.slow
@pytest.mark.parametrize("flags", [["dry_run=true"], ["overwrite=true"]])
def test_the_saved_config_is_never_written_through_a_planted_link(tmp_path, flags):
    """.hydra/config.yaml.partial (and the other two) planted as links in prep's own folder: the CLI writes its
    config beside them, never through them."""
    run_dir = tmp_path / "run"
    victim = _victim(tmp_path)
    run_prep("limit=10", f"hydra.run.dir={run_dir}", *flags)
    for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
        _plant(run_dir, f".hydra/{name}.partial", victim)
    proc = run_prep("limit=10", f"hydra.run.dir={run_dir}", *flags, check=False)
    assert proc.returncode == 0, proc.stderr
    assert victim.read_bytes() == b"another user's file\n"
    assert "limit: 10" in (run_dir / ".hydra" / "config.yaml").read_text()


def test_a_symlinked_folder_where_prep_writes_is_refused_and_untouched(tmp_path):
    """.prep-manifest (or summary.json) as a link: refused before anything is read or written through it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "run.json").write_text('{"fingerprint": "", "files": [], "owned": ["../outside/keep"]}')
    for name in (".prep-manifest", "summary.json"):
        out = tmp_path / f"out{name}"
        out.mkdir()
        (out / name).symlink_to(outside / ("." if name.startswith(".") else "run.json"))
        for flags in ({}, {"overwrite": True}, {"resume": True}):
            with pytest.raises(ConfigError, match=rf"is not empty \({name}\): it is a symbolic link"):
                _run(out, **flags)
    assert sorted(p.name for p in outside.iterdir()) == ["run.json"]


def test_resume_deletes_nothing_through_a_symlinked_folder_the_manifest_names(tmp_path):
    """A manifest edited to own `.hydra/link/victim.txt` (and `.prep-manifest/link/...`), with the folder a link
    leading outside: resume deletes only regular files reached without a link."""
    out = tmp_path / "out"
    victim = _victim(tmp_path)
    with shard_task_dies(1):
        _run(out)
    (out / ".hydra").mkdir()
    (out / ".hydra" / "link").symlink_to(victim.parent)
    (out / ".prep-manifest" / "link").symlink_to(victim.parent)
    header = json.loads((out / ".prep-manifest" / "run.json").read_text())
    header["owned"] += [".hydra/link/victim.txt", ".prep-manifest/link/victim.txt"]
    (out / ".prep-manifest" / "run.json").write_text(json.dumps(header))
    summary = _run(out, resume=True)
    assert summary["num_records"] == 30 and victim.read_bytes() == b"another user's file\n"


@pytest.mark.parametrize("foreign", ["plan.json", "prep.log", ".hydra/config.yaml"])
def test_another_programs_bookkeeping_files_make_the_folder_foreign(tmp_path, foreign):
    """plan.json, prep.log or .hydra/ that prep did not write (no mark of prep's in the folder): refused, untouched."""
    out = tmp_path / "out"
    (out / foreign).parent.mkdir(parents=True, exist_ok=True)
    (out / foreign).write_text("another tool's\n")
    for flags in ({}, {"overwrite": True}, {"resume": True}, {"dry_run": True}):
        with pytest.raises(ConfigError, match=r"is not empty"):
            _run(out, **flags)
    assert (out / foreign).read_text() == "another tool's\n"
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [foreign]


def test_prep_s_own_bookkeeping_files_are_its_own(tmp_path):
    """A dry run marks the folder: the real run then goes ahead there, and the mark is prep's, not a name."""
    out = tmp_path / "out"
    _run(out, dry_run=True)
    assert outputs.is_marked(str(out))
    assert _run(out)["num_records"] == 30
    (out / ".prep-lock").write_bytes(b"")  # an unmarked lock (another tool's, or prep before the mark)
    (out / "summary.json").unlink()
    os.rename(out / ".prep-manifest", out / "gone") if (out / ".prep-manifest").exists() else None
    assert not outputs.is_marked(str(out))


def test_cli_refuses_another_hydra_apps_folder_and_leaves_it_alone(tmp_path):
    """A folder another Hydra app ran in (its .hydra/ and its log): `prep` refuses it in one line, writes nothing."""
    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text("db: mysql\n")
    (run_dir / "prep.log").write_text("not prep's\n")
    before = {str(p.relative_to(run_dir)): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    proc = run_prep("limit=10", f"hydra.run.dir={run_dir}", check=False)
    assert proc.returncode == 1 and "is not empty" in proc.stderr and "Traceback" not in proc.stderr
    after = {str(p.relative_to(run_dir)): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    assert after == before


def test_a_stopped_run_leaves_its_log_only_in_a_folder_it_can_mark(tmp_path):
    """A run refused in a fresh folder keeps its log and config there (and marks the folder as prep's); a later run
    then takes the folder; a folder holding another program's prep.log gets nothing appended."""
    fresh = tmp_path / "fresh"
    proc = run_prep("limit=10", "on_error=bogus", f"hydra.run.dir={fresh}", check=False)
    assert proc.returncode == 1 and (fresh / "prep.log").is_file() and outputs.is_marked(str(fresh))
    assert run_prep("limit=10", f"hydra.run.dir={fresh}").returncode == 0
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "prep.log").write_text("not prep's\n")
    proc = run_prep("limit=10", "on_error=bogus", f"hydra.run.dir={theirs}", check=False)
    assert proc.returncode == 1 and (theirs / "prep.log").read_text() == "not prep's\n" and sorted(os.listdir(theirs)) == ["prep.log"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(st.sampled_from(["a", "b", ".hydra", "x.partial"]), min_size=1, max_size=4), link_at=st.integers(0, 3))
def test_nofollow_never_leaves_its_root(tmp_path_factory, parts, link_at):
    """Whatever the path and wherever a link is planted on it, a write lands inside root or fails; a delete
    removes only a regular file inside root."""
    base = tmp_path_factory.mktemp("nf")
    root, outside = base / "root", base / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "keep").write_bytes(b"keep")
    at = min(link_at, len(parts) - 1)
    (root.joinpath(*parts[:at])).mkdir(parents=True, exist_ok=True)
    link = root.joinpath(*parts[: at + 1])
    if not link.exists() and not link.is_symlink():
        link.symlink_to(outside if at < len(parts) - 1 else outside / "keep")
    target = str(root.joinpath(*parts))
    try:
        nofollow.write_bytes(str(root), target, b"new")
    except OSError:
        pass
    nofollow.remove(str(root), target)
    assert sorted(os.listdir(outside)) == ["keep"] and (outside / "keep").read_bytes() == b"keep"


def test_webdataset_and_stratified_runs_write_nothing_through_links(tmp_path):
    """The same for a tar run with a wids index and three splits: every temporary name of an overwrite planted."""
    out = tmp_path / "out"
    victim = _victim(tmp_path)
    writer = lambda: WebDatasetWriter(shard_size=10)  # noqa: E731
    _run(out, limit=40, splitter=StratifiedSplit(val=0.2, test=0.2), writer=writer())
    with shard_task_dies(1):
        _run(out, limit=40, splitter=StratifiedSplit(val=0.2, test=0.2), writer=writer(), overwrite=True)
    recorded = outputs.Manifest(str(out), "").recorded()
    planted = sorted(p for p in recorded if p.endswith(".partial"))
    assert planted
    for rel in planted:
        _plant(out, rel, victim)
    summary = _run(out, limit=40, splitter=StratifiedSplit(val=0.2, test=0.2), writer=writer(), resume=True)
    assert summary["num_records"] == 40 and victim.read_bytes() == b"another user's file\n"
    assert json.loads((out / "summary.json").read_text())["num_records"] == 40


# --- found by the hostile pass ------------------------------------------------------------------------------


@pytest.mark.parametrize("lock", ["hard link", "foreign content", "folder"])
def test_a_lock_file_that_is_not_prep_s_is_refused_and_untouched(tmp_path, lock):
    """A hard link at .prep-lock (to a file outside), another program's lock, or a folder there: prep would write its
    mark into it. Refused in one line; the file outside keeps its bytes."""
    out = tmp_path / "out"
    out.mkdir()
    victim = _victim(tmp_path)
    if lock == "hard link":
        os.link(victim, out / ".prep-lock")
    elif lock == "foreign content":
        (out / ".prep-lock").write_text("another program's lock\n")
    else:
        (out / ".prep-lock").mkdir()
    for flags in ({}, {"overwrite": True}, {"dry_run": True}):
        with pytest.raises(ConfigError, match=r"is not empty \(\.prep-lock\)"):
            _run(out, **flags)
    assert victim.read_bytes() == b"another user's file\n"


def test_a_hard_linked_log_is_never_appended_to(tmp_path):
    """prep.log hard-linked to a file outside, in prep's own (marked) folder: the log is not written there."""
    run_dir = tmp_path / "run"
    victim = _victim(tmp_path)
    run_prep("limit=10", f"hydra.run.dir={run_dir}", "dry_run=true")
    (run_dir / "prep.log").unlink()
    os.link(victim, run_dir / "prep.log")
    proc = run_prep("limit=10", f"hydra.run.dir={run_dir}", check=False)
    assert proc.returncode == 0 and "the run's log is not written there" in proc.stderr
    assert victim.read_bytes() == b"another user's file\n"


def test_another_programs_summary_or_manifest_is_never_taken_for_prep_s(tmp_path):
    """A summary.json with prep's name and two of its keys, or a .prep-manifest/run.json without prep's header:
    overwrite=true must not delete what they list."""
    for name, content in (("summary.json", '{"dataset": "x", "shards": [{"path": "model.ckpt"}]}'),
                          (".prep-manifest/run.json", '{"owned": ["model.ckpt"]}')):
        out = tmp_path / name.split("/")[0].strip(".")
        (out / name).parent.mkdir(parents=True)
        (out / name).write_text(content)
        (out / "model.ckpt").write_bytes(b"weights")
        for flags in ({}, {"overwrite": True}, {"resume": True}):
            with pytest.raises(ConfigError, match=r"is not empty|already holds"):
                _run(out, **flags)
        assert (out / "model.ckpt").read_bytes() == b"weights" and (out / name).read_text() == content


def test_the_manifest_is_never_read_through_a_link(tmp_path):
    """.prep-manifest/run.json as a link to a file outside (that says what prep's header says): not read, so the
    run holds no record of prep's and is refused."""
    out = tmp_path / "out"
    outside = _victim(tmp_path, "run.json")
    outside.write_text(json.dumps({"fingerprint": "", "files": [], "owned": []}))
    (out / ".prep-manifest").mkdir(parents=True)
    (out / ".prep-manifest" / "run.json").symlink_to(outside)
    with pytest.raises(ConfigError, match=r"holds no record prep wrote"):
        _run(out, overwrite=True)


def test_report_o_leaves_the_users_own_partial_file_alone(tmp_path):
    """prep-report -o FILE writes under a temporary name of its own: a FILE.partial of the user's stays."""
    from prep.tools import report

    out = tmp_path / "out"
    _run(out)
    page = tmp_path / "pages" / "page.html"
    page.parent.mkdir()
    (page.parent / "page.html.partial").write_text("my draft\n")
    assert report.main([str(out), "-o", str(page)]) == 0
    assert (page.parent / "page.html.partial").read_text() == "my draft\n" and page.read_bytes().startswith(b"<!DOCTYPE html>")
    assert sorted(os.listdir(page.parent)) == ["page.html", "page.html.partial"]


@pytest.mark.parametrize("value", [2.5, 1.5, -1])
def test_max_skipped_is_a_whole_count_or_a_fraction_below_one(tmp_path, value):
    with pytest.raises(ConfigError, match=r"max_skipped="):
        _run(tmp_path / "out", max_skipped=value)


def test_a_refused_run_writes_no_log_beside_another_programs_lock(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / ".prep-lock").write_text("another program's lock\n")
    proc = run_prep("limit=10", f"hydra.run.dir={run_dir}", check=False)
    assert proc.returncode == 1 and "not prep's lock file" in proc.stderr
    assert sorted(os.listdir(run_dir)) == [".prep-lock"] and (run_dir / ".prep-lock").read_text() == "another program's lock\n"


@pytest.mark.parametrize("edit", ["class_counts", "formats", "num_records"])
def test_resume_reads_back_the_shards_it_keeps(tmp_path, edit):
    """A finished shard's record in the manifest edited between the Ctrl-C and resume=true: the kept shard is read
    back, so the run stops before summary.json instead of publishing numbers the shard does not hold."""
    from prep.core.errors import WriteError

    out = tmp_path / "out"
    features = {**FEATURES, "format": "format"}
    writer = lambda: TFRecordWriter(shard_size=10, features=features)  # noqa: E731
    with shard_task_dies(2):
        _run(out, writer=writer())
    assert _run(tmp_path / "clean", writer=writer())["num_records"] == 30  # the honest resume below works likewise
    entries = [p for p in (out / ".prep-manifest").iterdir() if p.name != "run.json"]
    entry = json.loads(entries[0].read_text())
    entry["result"][edit] = {"0": 10} if edit == "class_counts" else {"png": 9, "jpeg": 1} if edit == "formats" else 9
    entries[0].write_text(json.dumps(entry, sort_keys=True))
    with pytest.raises(WriteError, match=r"resume=true: the finished shard .* is not what the run recorded"):
        _run(out, writer=writer(), resume=True)
    assert not (out / "summary.json").exists()


def test_an_honest_resume_keeps_its_shards_and_matches_a_clean_run(tmp_path):
    out, clean = tmp_path / "out", tmp_path / "clean"
    with shard_task_dies(2):
        _run(out)
    resumed = _run(out, resume=True)
    assert [s["sha256"] for s in resumed["shards"]] == [s["sha256"] for s in _run(clean)["shards"]]
