"""A real Ray cluster of two nodes on this machine (`ray start --head`, then `ray start --address`), each with one
CPU, and prep run against it as a user would: `executor=ray executor.address=auto`, inputs and outputs in S3."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO, jpeg_bytes, run_prep
from test_cluster import s3  # noqa: F401  (the moto S3 server fixture)

ray = pytest.importorskip("ray")  # an optional extra; CI installs it with the dev dependencies
RAY = str(Path(sys.executable).with_name("ray"))  # the `ray` command of this interpreter's environment
START_TIMEOUT = 90  # seconds for both nodes to join (about 8 s on a 2-core machine)

# Runs inside a driver process: waits until the cluster has `nodes` alive nodes and prints their ids. A separate
# process, so this pytest process never joins the cluster (its Ray state and auth token would outlive the test).
WAIT_FOR_NODES = """
import sys, time, ray
ray.init(address=sys.argv[1], logging_level="WARNING", log_to_driver=False)
deadline = time.monotonic() + float(sys.argv[3])
while True:
    alive = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])
    if len(alive) >= int(sys.argv[2]) or time.monotonic() > deadline:
        break
    time.sleep(0.2)
print(" ".join(alive))
"""


@dataclass
class Cluster:
    address: str  # host:port of the head's GCS, what RAY_ADDRESS holds on a node of a cluster
    node_ids: list[str]
    driver_env: dict[str, str]  # what a driver on this cluster needs beyond the nodes' own environment


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _node_ports() -> list[str]:
    # Every port a node listens on, chosen free: Ray's fixed defaults (8265, 52365, ...) would collide between
    # the two nodes here and with any other Ray instance on the machine.
    names = ("node-manager-port", "object-manager-port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port", "metrics-export-port")
    return [f"--{name}={_free_port()}" for name in names]


def _processes_under(marker: str) -> list[int]:
    """The ids of this user's processes whose command line names `marker` (our cluster's own temp dir):
    every Ray process of our two nodes, and nothing of any other Ray instance on the machine."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                command = f.read()
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if marker.encode() in command:
            found.append(int(entry))
    return found


def _stop(nodes: list[subprocess.Popen], marker: str) -> list[int]:
    """Stop our two nodes only (never `ray stop`, which stops every Ray instance of this user, another test
    run's included): SIGTERM to each `ray start --block` (it stops the node's processes), then SIGKILL to
    whatever of ours is left. Returns the processes that had to be killed."""
    for node in nodes:
        if node.poll() is None:
            node.send_signal(signal.SIGTERM)
    for node in nodes:
        try:
            node.wait(timeout=30)
        except subprocess.TimeoutExpired:
            node.kill()
            node.wait()
    leftover = _processes_under(marker)
    for pid in leftover:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return leftover


def _start_node(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        # Its own session: a Ctrl-C on the test run reaches the nodes only through the teardown.
        return subprocess.Popen([RAY, "start", *args], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _log_tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:] if path.exists() else "(no log)"


@pytest.fixture
def cluster(s3) -> Cluster:  # noqa: F811  (s3 first: the nodes take its endpoint and keys from the environment)
    """Two Ray nodes with one CPU each on this machine, started with prep importable (PYTHONPATH, as an install
    on every node would make it) and the S3 endpoint and keys in their environment; stopped in teardown."""
    # Ray's socket paths live under the temp dir and must stay short (108 bytes), so not under tmp_path.
    temp_dir = tempfile.mkdtemp(prefix="prep-ray-", dir="/tmp")
    port = _free_port()
    address = f"127.0.0.1:{port}"
    # Token authentication as Ray 2.5x clusters use it, with this cluster's own token: nothing is read from or
    # written to ~/.ray, and the nodes and the driver must all hold it.
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    env = {
        **os.environ, **auth, "RAY_USAGE_STATS_ENABLED": "0",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    common = [
        "--node-ip-address=127.0.0.1", "--num-cpus=1", "--num-gpus=0", "--object-store-memory=100000000",
        f"--temp-dir={temp_dir}", "--disable-usage-stats", "--block",
    ]
    head_log, worker_log = Path(temp_dir, "head.log"), Path(temp_dir, "worker.log")
    nodes: list[subprocess.Popen] = []
    try:
        nodes.append(_start_node(
            ["--head", f"--port={port}", "--include-dashboard=false", f"--dashboard-port={_free_port()}",
             f"--ray-client-server-port={_free_port()}", *common, *_node_ports()], env, head_log,
        ))
        deadline = time.monotonic() + START_TIMEOUT
        while not Path(temp_dir, "ray_current_cluster").exists():  # written once the head is up
            assert nodes[0].poll() is None, f"ray start --head exited {nodes[0].returncode}:\n{_log_tail(head_log)}"
            assert time.monotonic() < deadline, f"the head node did not start in {START_TIMEOUT} s:\n{_log_tail(head_log)}"
            time.sleep(0.2)
        nodes.append(_start_node([f"--address={address}", *common, *_node_ports()], env, worker_log))
        waited = subprocess.run(
            [sys.executable, "-c", WAIT_FOR_NODES, address, "2", str(max(1.0, deadline - time.monotonic()))],
            env=env, capture_output=True, text=True, timeout=START_TIMEOUT + 30,
        )
        node_ids = waited.stdout.split()
        assert len(node_ids) == 2, (
            f"the cluster has {len(node_ids)} node(s), not 2:\n{waited.stderr[-2000:]}\nworker node:\n{_log_tail(worker_log)}"
        )
        yield Cluster(address, node_ids, {**auth, "RAY_ADDRESS": address})
    finally:
        leftover = _stop(nodes, temp_dir)
        still_there = [pid for pid in _processes_under(temp_dir)]
        shutil.rmtree(temp_dir, ignore_errors=True)
        assert not still_there, f"Ray processes of the test cluster survived SIGKILL: {still_there}"
        if leftover:
            print(f"teardown: SIGKILLed {len(leftover)} Ray process(es) that outlived their node", file=sys.stderr)


IMAGES, SHARD_SIZE = 12, 2  # 6 shards: more than the cluster's 2 CPUs


def _run_args(out: str, *extra: str) -> tuple[str, ...]:
    # PNG at compression 9 costs about 0.3 s per photo, so a shard task takes about half a second. Tasks of a
    # few milliseconds would all run on whichever node has a worker process first (Ray hands a finished worker
    # the next queued task); real shards of thousands of images take far longer than a worker's start.
    return (
        "dataset=imagenet_val", "source.image_dir=s3://prep-test/in/val_images", "labels.path=s3://prep-test/in/val.txt",
        "encoder=png", "encoder.png_compression=9", f"writer.shard_size={SHARD_SIZE}", f"output_dir={out}", *extra,
    )


def _upload_photos(s3, photos) -> None:  # noqa: F811
    """IMAGES whole photos (427x640, each a slightly different cut) and their val.txt, into s3://prep-test/in."""
    lines = []
    for i in range(IMAGES):
        photo = photos[i % len(photos)]
        name = f"ILSVRC2012_val_{i + 1:08d}.JPEG"
        s3.pipe_file(f"prep-test/in/val_images/{name}", jpeg_bytes(photo[i : photo.shape[0] - IMAGES + i, i:]))
        lines.append(f"{name} {i % 3}\n")
    s3.pipe_file("prep-test/in/val.txt", "".join(lines).encode())


@pytest.mark.slow
def test_two_node_cluster_writes_the_same_bytes_as_local(tmp_path, photos, s3, cluster, monkeypatch):  # noqa: F811
    _upload_photos(s3, photos)
    run_prep(*_run_args("s3://prep-test/out/local", f"hydra.run.dir={tmp_path / 'local'}"))

    # The driver as a user on a node of the cluster has it: RAY_ADDRESS (and the cluster's token) set, and
    # run from a folder that is not prep's checkout, so the tasks import prep as the nodes have it.
    for key, value in cluster.driver_env.items():
        monkeypatch.setenv(key, value)
    proc = run_prep(*_run_args("s3://prep-test/out/ray", "executor=ray", "executor.address=auto", f"hydra.run.dir={tmp_path / 'ray'}"), cwd=tmp_path)

    local, on_ray = (json.loads(s3.cat_file(f"prep-test/out/{run}/summary.json")) for run in ("local", "ray"))
    assert len(local["shards"]) == IMAGES // SHARD_SIZE and on_ray["num_records"] == IMAGES
    assert on_ray["shards"] == local["shards"]  # paths, counts, bytes and sha256: nothing about nodes in there
    for shard in local["shards"]:
        assert s3.cat_file(f"prep-test/out/ray/{shard['path']}") == s3.cat_file(f"prep-test/out/local/{shard['path']}")
    assert sorted(p.rsplit("/", 1)[1] for p in s3.ls("prep-test/out/ray")) == sorted(p.rsplit("/", 1)[1] for p in s3.ls("prep-test/out/local"))

    # Both nodes wrote shards: the driver's log says which node ran how many tasks.
    spread = re.search(r"ray: (\d+) task\(s\) ran on (\d+) node\(s\): (.*)", proc.stderr)
    assert spread, proc.stderr
    print(spread.group(0))
    counts = {node: int(n) for node, n in re.findall(r"(\w+) \([^)]*\): (\d+)", spread.group(3))}
    assert int(spread.group(1)) == len(local["shards"]) == sum(counts.values())
    assert sorted(node[:12] for node in cluster.node_ids) == sorted(counts), (cluster.node_ids, spread.group(0))
    assert all(n >= 1 for n in counts.values())

    # A local output_dir on a cluster of two nodes would scatter shards over two disks: refused before
    # anything is written, unless the user says the path is shared by every node.
    scattered = tmp_path / "scattered"
    refused = run_prep(*_run_args(str(scattered), "executor=ray", "executor.address=auto", f"hydra.run.dir={tmp_path / 'refused'}"), check=False)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1].endswith(
        f"output_dir {scattered} is a local path, but the Ray cluster at executor.address=auto: it has 2 nodes; "
        "use object storage (s3://, gs://, ...) or set executor.shared_filesystem=true if every node mounts it at the same path"
    )
    assert "Traceback" not in refused.stderr and not scattered.exists()
    # Both nodes are this machine, so the folder is shared indeed: a user who says so gets past the check (a dry
    # run: the check is all that differs from the runs above).
    run_prep(*_run_args(str(scattered), "executor=ray", "executor.address=auto", "executor.shared_filesystem=true", "dry_run=true",
                        f"hydra.run.dir={tmp_path / 'shared'}"))
    assert json.loads((scattered / "plan.json").read_text())["shards"][0]["path"] == local["shards"][0]["path"]


# Without a cluster: what RayExecutor checks and asks Ray for, each in well under a second.


def test_ray_executor_settings_are_checked():
    from prep.core.errors import ConfigError
    from prep.executors.ray import RayExecutor

    with pytest.raises(ConfigError, match=r"executor.scheduling_strategy='PACK': choose one of \['SPREAD', 'DEFAULT'\]"):
        RayExecutor(scheduling_strategy="PACK")
    with pytest.raises(ConfigError, match=r"executor.num_cpus=2: only for a local Ray instance"):
        RayExecutor(address="auto", num_cpus=2)
    with pytest.raises(ConfigError, match=r"executor.runtime_env='pip': give a mapping"):
        RayExecutor(runtime_env="pip")


def _recording_init(monkeypatch) -> list[dict]:
    calls: list[dict] = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append(kwargs))
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    return calls


def test_paths_are_checked_only_against_a_cluster_and_only_local_ones(monkeypatch):
    from prep.executors.ray import RayExecutor

    calls = _recording_init(monkeypatch)
    RayExecutor().check_paths("/tmp/out", ["/tmp/in"])  # a local instance is one node: no question to ask
    RayExecutor(address="auto").check_paths("s3://b/out", ["s3://b/in", "gs://c/labels.txt"])  # nothing local
    RayExecutor(address="auto", shared_filesystem=True).check_paths("/mnt/shared/out", ["/mnt/shared/in"])
    assert calls == []

    monkeypatch.setattr(ray, "nodes", lambda: [{"NodeID": "a", "Alive": True}, {"NodeID": "b", "Alive": False}])
    RayExecutor(address="auto").check_paths("/tmp/out", ["s3://b/in"])  # one node alive: local is fine
    assert [call["address"] for call in calls] == ["auto"]


def test_a_local_image_dir_on_a_cluster_of_two_nodes_is_refused(monkeypatch):
    from prep.core.errors import ConfigError
    from prep.executors.ray import RayExecutor

    calls = _recording_init(monkeypatch)
    monkeypatch.setattr(ray, "nodes", lambda: [{"NodeID": "a", "Alive": True}, {"NodeID": "b", "Alive": True}])
    with pytest.raises(ConfigError, match=r"^input /data/images is a local path, but the Ray cluster at executor.address=head:6379: it has 2 nodes; use object"):
        RayExecutor(address="head:6379").check_paths("s3://b/out", ["/data/images", "s3://b/labels.txt"])
    # Through Ray Client no node is this machine: refused whatever the size of the cluster, without asking it.
    with pytest.raises(ConfigError, match=r"^output_dir /data/out is a local path, but the Ray cluster at executor.address=ray://head:10001: it is reached through Ray Client"):
        RayExecutor(address="ray://head:10001").check_paths("/data/out", ["s3://b/in"])
    assert [call["address"] for call in calls] == ["head:6379"]


def test_ray_init_gets_a_new_local_instance_or_the_cluster_and_the_runtime_env(monkeypatch):
    from prep.executors.ray import RayExecutor

    calls = _recording_init(monkeypatch)
    RayExecutor(num_cpus=2)._connect()
    RayExecutor(address="auto", runtime_env={"pip": ["prep"]})._connect()
    # "local", not None: plain ray.init() would join whatever RAY_ADDRESS or a `ray start` on this machine names.
    assert [(c["address"], c.get("num_cpus"), c.get("runtime_env")) for c in calls] == [("local", 2, None), ("auto", None, {"pip": ["prep"]})]


def test_the_cluster_settings_compose_from_the_command_line():
    from test_config import composed

    from prep.app import build

    executor = build(composed("executor=ray", "executor.address=auto", "executor.runtime_env={pip:['prep==1.0'],env_vars:{A:b}}",
                              "executor.shared_filesystem=true", "executor.scheduling_strategy=DEFAULT").executor, "executor")
    assert (executor.address, executor.runtime_env, executor.shared_filesystem, executor.scheduling_strategy) == (
        "auto", {"pip": ["prep==1.0"], "env_vars": {"A": "b"}}, True, "DEFAULT")
    assert build(composed("executor=ray").executor, "executor").runtime_env is None
