"""`kbench run --workers --address`: a real Ray cluster started with `ray start`, as a user starts one.

The cluster lives on this machine's loopback: a head on 127.0.0.2 and a second node on 127.0.0.3 (`ray start`
turns a --node-ip-address of 127.0.0.1 into the machine's interface address, so the head cannot have it), one
CPU each, token authentication on with the test's own token (RAY_AUTH_TOKEN; ~/.ray is not touched), Ray's
session files in a temporary folder of the test's own and every port chosen free. Each node is a
`ray start --block` process in a session of its own; the test stops each node by killing that process and its
descendants (raylet, GCS, workers), found by parent id, never with `ray stop`, which stops every Ray instance of
the machine (other test runs' too). Ray listens on all of the machine's addresses; the test connects to
loopback ones only."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

from kbench.cli import main
from kbench.config import Overrides
from kbench.errors import KbenchError
from kbench.experiments import load_experiment
from kbench.ray_runner import RayOptions
from kbench.results.table import results_table
from kbench.results.trial_folder import TrialFolder
from kbench.training.checkpoints import backup_state

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="loopback addresses beyond 127.0.0.1: Linux")

HEAD_IP, NODE_IP = "127.0.0.2", "127.0.0.3"
BOUND_S = 420  # one kbench run on the cluster, at most
START_S = 120  # one `ray start`, at most
EXACT = ["backend", "status", "epochs_run", "best_epoch"]
CLOSE = ["test_accuracy", "test_loss", "best_val_accuracy"]
# Two `ray start` nodes and kbench runs with a worker process per trial: 3-4 minutes on the 2-core development
# machine, too long for CI's budget on any backend: `pytest -m slow tests/test_ray_cluster.py` runs them.
CLUSTER = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def descendants(pid: int) -> list[int]:
    """`pid` and every process under it, read from /proc (Ray's workers start sessions of their own, so a
    process group does not hold them)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) if entry.name.isdigit() else None
        except (OSError, IndexError, ValueError):  # gone meanwhile
            continue
        if parent is not None:
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        found.append(todo.pop())
        todo.extend(children.get(found[-1], []))
    return found


class Node:
    """One `ray start --block` process (a head, or a node joining one) and its output file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], temp_dir: Path, prefix: tuple[str, ...] = ()):
        self.output = temp_dir / f"{name}.txt"
        with open(self.output, "w") as sink:
            self.process = subprocess.Popen(
                [*prefix, str(Path(sys.executable).with_name("ray")), "start", "--block", "--num-cpus=1",
                 "--num-gpus=0",
                 "--object-store-memory=100000000", "--disable-usage-stats", f"--temp-dir={temp_dir}",
                 f"--dashboard-agent-listen-port={free_port()}", *args],
                stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.time() + START_S
        while "Ray runtime started" not in self.output.read_text():
            if self.process.poll() is not None or time.time() > deadline:
                self.kill()
                pytest.fail(f"ray start {name} did not start:\n{self.output.read_text()[-3000:]}")
            time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL to the node's processes: what a machine that dies does to them."""
        for pid in descendants(self.process.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait()


@pytest.fixture(scope="module")
def cluster():
    """A token-authenticated head on HEAD_IP and a second node on NODE_IP; yields (address, environment with
    the token, head, node, Ray's temporary folder). Both stopped (and the folder removed) at the end."""
    pytest.importorskip("ray")
    # Short: Ray's socket paths under it must stay under the 107 characters a Unix socket name allows.
    temp_dir = Path(tempfile.mkdtemp(prefix="kbray-", dir="/tmp"))
    port = free_port()
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32), PYTHONUNBUFFERED="1")
    nodes = []
    try:
        nodes.append(Node("head", ["--head", f"--node-ip-address={HEAD_IP}", f"--port={port}",
                                   "--include-dashboard=false", f"--dashboard-port={free_port()}",
                                   f"--ray-client-server-port={free_port()}"], env, temp_dir))
        nodes.append(Node("node", [f"--address={HEAD_IP}:{port}", f"--node-ip-address={NODE_IP}"], env, temp_dir))
        driver_env = {key: value for key, value in env.items() if key != "RAY_AUTH_MODE"}  # kbench sets it
        yield f"{HEAD_IP}:{port}", driver_env, nodes[0], nodes[1], temp_dir
    finally:
        for node in reversed(nodes):
            node.kill()
        shutil.rmtree(temp_dir, ignore_errors=True)


def kbench(logs: Path, output: Path, address: str, env: dict[str, str], *flags: str) -> subprocess.Popen:
    """`kbench run quickstart --quick --workers 2 --address ADDRESS` in a process of its own."""
    with open(output, "w") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "kbench", "run", "quickstart", "--quick", "--logs-dir", str(logs), "--workers",
             "2", "--address", address, *flags],
            stdout=sink, stderr=subprocess.STDOUT, start_new_session=True, env=dict(env, RAY_DEDUP_LOGS="0"))


def finish(process: subprocess.Popen, output: Path) -> int:
    try:
        return process.wait(timeout=BOUND_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail(f"kbench on the cluster outlived {BOUND_S} s:\n{output.read_text()[-3000:]}")


def table(logs: Path, overrides: Overrides = Overrides(quick=True)) -> pd.DataFrame:
    return results_table(load_experiment("quickstart"), overrides, logs).reset_index(drop=True)


def trial_folders(logs: Path) -> list[TrialFolder]:
    return [TrialFolder(p.parent) for p in logs.rglob("identity.json")]


def environment(folder: TrialFolder) -> dict:
    """The trial's environment.json; empty before its first attempt has written one."""
    path = folder.path / "environment.json"
    return json.loads(path.read_text()) if path.is_file() else {}


@CLUSTER
def test_a_two_node_cluster_trains_the_grid_and_survives_a_lost_node(cluster, tmp_path):
    address, env, _, node, _ = cluster

    # 1. Both nodes train trials, each recorded in its environment.json; the table is the sequential one.
    sequential = tmp_path / "sequential"
    assert main(["run", "quickstart", "--quick", "--logs-dir", str(sequential), "--quiet"]) == 0
    logs, output = tmp_path / "cluster", tmp_path / "cluster.txt"
    assert finish(kbench(logs, output, address, env), output) == 0, output.read_text()[-3000:]
    assert f"joining the Ray cluster at {address}" in output.read_text()
    got, expected = table(logs), table(sequential)
    pd.testing.assert_frame_equal(got[EXACT], expected[EXACT])
    pd.testing.assert_frame_equal(got[CLOSE], expected[CLOSE], rtol=1e-4, atol=1e-4)
    places = [environment(folder) for folder in trial_folders(logs)]
    assert len(places) == 4 and {place["ray_node_ip"] for place in places} == {HEAD_IP, NODE_IP}
    assert all(len(place["ray_node_id"]) == 56 for place in places)  # Ray's node ids: 28 bytes in hex

    # 2. The second node killed (all its processes) while its trial is between epochs: Ray retries the trial on
    # the head, which resumes it after its last finished epoch.
    logs, output = tmp_path / "node-lost", tmp_path / "node-lost.txt"
    driver = kbench(logs, output, address, env, "--set", "epochs=3", "--grid", "model=a1")
    victim, epochs_done = pause_a_trial_on(NODE_IP, logs, driver, output)
    done_rows = victim.history().query(f"epoch < {epochs_done}")
    node.kill()
    assert finish(driver, output) == 0, output.read_text()[-3000:]
    assert victim.is_finished() and environment(victim)["ray_node_ip"] == HEAD_IP
    assert f"resuming after epoch {epochs_done} " in output.read_text()
    assert victim.history()["epoch"].tolist() == [0, 1, 2]
    pd.testing.assert_frame_equal(victim.history().query(f"epoch < {epochs_done}"), done_rows)
    got = table(logs, Overrides(sets=["epochs=3"], grids=["model=a1"], quick=True))
    assert len(got) == 2 and set(got["status"]) == {"finished"} and set(got["epochs_run"]) == {3}


def pause_a_trial_on(ip: str, logs: Path, driver: subprocess.Popen, output: Path) -> tuple[TrialFolder, int]:
    """A trial training on the node at `ip` with some but not all of its 3 epochs in its backup, its worker
    paused (SIGSTOP) so that nothing changes until the node is killed: (its folder, the epochs backed up)."""
    deadline = time.time() + BOUND_S
    while time.time() < deadline and driver.poll() is None:
        for folder in trial_folders(logs):
            claim = folder.read_claim()
            if (not claim or folder.is_finished() or folder.history().empty
                    or environment(folder).get("ray_node_ip") != ip):
                continue
            os.kill(claim["pid"], signal.SIGSTOP)
            state = backup_state(folder.backup_dir)
            if state and 1 <= state[0] < 3 and not folder.is_finished() and folder.read_claim() == claim:
                return folder, state[0]
            os.kill(claim["pid"], signal.SIGCONT)  # between an epoch's history row and its backup, or done
        time.sleep(0.05)
    os.killpg(driver.pid, signal.SIGKILL)
    pytest.fail(f"no trial paused between epochs on {ip}:\n{output.read_text()[-3000:]}")


def test_an_address_where_nothing_listens_is_one_line_at_once():
    """Refused by --address's check, before any data loads (`kbench run` prints it as `kbench: error: ...`, exit
    2), where Ray itself would retry for minutes."""
    address = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(KbenchError) as refused:
        RayOptions(workers=2, address=address).check()
    assert time.monotonic() - started < 10
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(f"could not join the Ray cluster at {address}: nothing accepts connections there")
    assert message.endswith(f"ray status --address {address}")
    with pytest.raises(KbenchError, match="give the head's HOST:PORT"):
        RayOptions(workers=2, address="head-without-port").check()


@CLUSTER
def test_a_driver_without_the_token_is_told_how_to_get_it(cluster, tmp_path):
    """No RAY_AUTH_TOKEN and a home without ~/.ray/auth_token: the cluster refuses the driver."""
    address, env, *_ = cluster
    env = {key: value for key, value in env.items() if key != "RAY_AUTH_TOKEN"} | {"HOME": str(tmp_path)}
    output = tmp_path / "no-token.txt"
    assert finish(kbench(tmp_path / "logs", output, address, env), output) == 2
    last = output.read_text().strip().splitlines()[-1]
    assert last.startswith(f"kbench: error: could not join the Ray cluster at {address}: the cluster uses token "
                           "authentication and this machine has no token"), output.read_text()[-3000:]
    assert "ray get-auth-token" in last and f"ray status --address {address}" in last
    assert "Traceback" not in output.read_text()


@CLUSTER
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="a mount namespace needs root")
def test_a_node_that_cannot_see_the_logs_folder_is_named_before_training(cluster, tmp_path):
    """A node started in a mount namespace of its own, where an empty tmpfs covers the driver's logs folder."""
    address, env, _, _, temp_dir = cluster
    logs = tmp_path / "logs"
    logs.mkdir()
    blind = Node("blind", [f"--address={address}", "--node-ip-address=127.0.0.4"],
                 dict(env, RAY_AUTH_MODE="token"), temp_dir,
                 prefix=("unshare", "--mount", "--propagation", "private", "sh", "-c",
                         'mount -t tmpfs kbench-test "$0" && exec "$@"', str(logs)))
    try:
        output = tmp_path / "blind.txt"
        assert finish(kbench(logs, output, address, env), output) == 2, output.read_text()[-3000:]
    finally:
        blind.kill()
    last = output.read_text().strip().splitlines()[-1]
    assert last.startswith("kbench: error: Ray node(s) 127.0.0.4 ("), output.read_text()[-3000:]
    assert f"cannot see the logs folder {logs.resolve()}" in last
    assert not any(folder.history().size for folder in trial_folders(logs))  # refused before training
