"""`./run.sh` in demo mode (no NOTION_TOKEN): one Ctrl-C stops it gracefully, and an upload
cut by a stop goes on after a start on the same DATA_DIR without starting over."""
from __future__ import annotations

import base64
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
import requests

from harness import tusclient
from harness.processes import ROOT, wait_until
from harness.relay import make_file

MIB = 2**20
TUS = {"Tus-Resumable": "1.0.0"}
READY = re.compile(r"relay listening on (http://\S+)")
DEMO = re.compile(r"demo mode: .* emulator at (http://\S+)")


class RunSh:
    """`bash run.sh` in a process group of its own, as a terminal runs a foreground job."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            ["bash", str(ROOT / "run.sh")], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        match = wait_until(lambda: READY.search(self.output()) or self._gone(), timeout_s=120,
                           message="run.sh's ready line")
        assert self.proc.poll() is None, f"run.sh exited {self.proc.returncode}:\n{self.output()[-3000:]}"
        self.url = match.group(1)
        demo = DEMO.search(self.output())
        assert demo, self.output()
        self.emulator_url = demo.group(1)
        # The relay and the emulator run in sessions of their own: remember them for cleanup.
        self.children = psutil.Process(self.proc.pid).children(recursive=True)

    def _gone(self) -> bool:
        return self.proc.poll() is not None

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def ctrl_c(self) -> None:
        """What a terminal does on Ctrl-C: SIGINT to every process of the foreground group."""
        os.killpg(self.proc.pid, signal.SIGINT)

    def wait(self, timeout_s: float) -> int:
        return self.proc.wait(timeout=timeout_s)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        for child in self.children:
            try:
                child.kill()
            except psutil.NoSuchProcess:
                pass
        self._log.close()


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Callable[..., RunSh]]:
    """demo(**env) starts `./run.sh` in demo mode on tmp_path/data and a fixed free port (the
    same every time, so a client keeps its upload URL across restarts); all are stopped at the end."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("NOTION_") and k not in ("REDIS_URL", "EMULATOR_PORT", "PORT", "DATA_DIR")}
    env.update({"DATA_DIR": str(tmp_path / "data"), "PORT": str(free_port()), "PYTHONUNBUFFERED": "1"})
    started: list[RunSh] = []

    def start(**extra: str) -> RunSh:
        run = RunSh({**env, **extra}, tmp_path / f"run-{len(started)}.log")
        started.append(run)
        return run

    yield start
    for run in started:
        run.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_one_ctrl_c_stops_the_demo_gracefully_with_exit_0(demo) -> None:
    run = demo()
    children = run.children
    assert len(children) >= 2, [c.cmdline() for c in children]
    run.ctrl_c()
    assert run.wait(60) == 0, run.output()[-3000:]
    log = run.output()
    assert "second signal" not in log, log[-3000:]
    # the relay's graceful shutdown ran to its end, and before the emulator went away
    assert "shutting down" in log and re.search(r"msg=\"?stopped", log), log[-3000:]
    gone, alive = psutil.wait_procs(children, timeout=20)
    assert not alive, f"left running: {[p.cmdline() for p in alive]}"


def test_a_second_ctrl_c_stops_the_demo_at_once(demo, tmp_path: Path) -> None:
    run = demo(SHUTDOWN_TIMEOUT="120")
    # Notion never answers sends: the graceful shutdown would wait for the part in flight.
    faults = {"rate": 1, "kinds": {"stall": 1}, "endpoints": ["send"], "stall_s": 300}
    assert requests.post(f"{run.emulator_url}/_emulator/faults", json=faults, timeout=10).ok
    path = tmp_path / "small.txt"
    make_file(path, 100_000)
    client = threading.Thread(target=send_whole_file, args=(run.url, path), daemon=True)
    client.start()
    wait_until(lambda: requests.get(f"{run.emulator_url}/_emulator/stats", timeout=10).json()["in_flight"] >= 1,
               timeout_s=30, message="a send in flight at the emulator")
    run.ctrl_c()
    wait_until(lambda: "shutting down" in run.output(), timeout_s=30, message="the graceful shutdown")
    started = time.monotonic()
    run.ctrl_c()
    code = run.wait(60)
    assert time.monotonic() - started < 20, "the second Ctrl-C did not stop it at once"
    assert code != 0 and "second signal" in run.output(), run.output()[-3000:]
    gone, alive = psutil.wait_procs(run.children, timeout=20)
    assert not alive, f"left running: {[p.cmdline() for p in alive]}"


def send_whole_file(base: str, path: Path) -> None:
    """One tus upload in one PATCH; its answer never comes here (the relay is stopped)."""
    data = path.read_bytes()
    meta = f"filename {base64.b64encode(path.name.encode()).decode()}"
    try:
        created = requests.post(f"{base}/files/", timeout=30, headers={
            **TUS, "Upload-Length": str(len(data)), "Upload-Metadata": meta})
        requests.patch(f"{base}/files/{created.headers['Location'].rsplit('/', 1)[-1]}", data=data, timeout=120,
                       headers={**TUS, "Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"})
    except (requests.RequestException, KeyError):
        pass


def test_an_upload_goes_on_after_run_sh_is_stopped_and_started_again(demo, tmp_path: Path) -> None:
    part = 5 * MIB
    path = tmp_path / "big.txt"
    size = 5 * part + 12345  # over 20 MB: multi_part, 6 parts of 5 MiB (PART_SIZE_MB=5)
    sha = make_file(path, size)
    run = demo(PART_SIZE_MB="5")
    meta = ",".join(f"{k} {base64.b64encode(v).decode()}" for k, v in
                    (("filename", b"big.txt"), ("filetype", b"text/plain")))
    created = requests.post(f"{run.url}/files/", timeout=30, headers={
        **TUS, "Upload-Length": str(size), "Upload-Metadata": meta})
    assert created.status_code == 201, created.text
    location = created.headers["Location"]
    upload_id = location.rsplit("/", 1)[-1]
    upload_url = f"{run.url}/files/{upload_id}"
    sent = 0
    with open(path, "rb") as f:
        while sent < 2 * part + MIB:  # two whole parts and a bit of the third
            chunk = f.read(MIB)
            r = requests.patch(upload_url, data=chunk, timeout=60, headers={
                **TUS, "Content-Type": "application/offset+octet-stream", "Upload-Offset": str(sent)})
            assert r.status_code == 204, r.text
            sent = int(r.headers["Upload-Offset"])

    def status() -> dict:
        return requests.get(f"{run.url}/api/upload/status/{upload_id}", timeout=10).json()

    wait_until(lambda: status()["parts_confirmed"] >= 2, timeout_s=60, message="two parts in Notion")
    notion_id = status()["notion"]["file_upload_id"]
    emulator_url = run.emulator_url
    run.ctrl_c()
    assert run.wait(60) == 0, run.output()[-3000:]

    run = demo(PART_SIZE_MB="5")
    # the emulator kept its port (DATA_DIR/emulator/port) and its uploads (journal)
    assert run.emulator_url == emulator_url
    head = requests.head(upload_url, headers=TUS, timeout=10)
    assert head.status_code == 200, head.headers
    offset = int(head.headers["Upload-Offset"])
    assert offset >= 2 * part and offset % part == 0, offset  # the durable offset: whole parts
    result = tusclient.upload(run.url, path, chunk_size=4 * MIB, url=location, deadline_s=180)
    assert result.completed_at, result.errors
    final = wait_until(lambda: (s := status())["status"] == "completed" and s, timeout_s=60,
                       message="status completed")
    assert final["notion"]["file_upload_id"] == notion_id
    stored = requests.get(f"{run.emulator_url}/_emulator/uploads/{notion_id}", timeout=10).json()
    assert stored["status"] == "uploaded" and stored["sha256"] == sha
    # not started over: the parts Notion held before the restart were not sent again
    assert stored["parts"]["1"]["sends"] == 1 and stored["parts"]["2"]["sends"] == 1, stored["parts"]
    assert stored["attached_to"], stored
