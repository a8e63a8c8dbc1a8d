"""`./run.sh` with no NOTION_TOKEN serves the demo: relay + emulator, one command."""
from __future__ import annotations

import os
import re
import signal

import psutil
import requests
from tusclient import client as tus

from harness.processes import ROOT, ManagedProcess
from harness.relay import make_file


def test_run_sh_serves_the_demo_and_stops_cleanly(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTION_")}
    env.update({"PORT": "0", "DATA_DIR": str(tmp_path / "data")})
    proc = ManagedProcess(["bash", str(ROOT / "run.sh")], r"relay listening on (http://\S+)",
                          tmp_path / "run.log", env=env, timeout_s=120)
    try:
        base = proc.match.group(1)
        demo = re.search(r"demo mode: .* emulator at (http://\S+)", proc.output())
        assert demo, proc.output()
        path = tmp_path / "demo.txt"
        sha = make_file(path, 3 * 2**20 + 17)
        uploader = tus.TusClient(f"{base}/files/").uploader(str(path), chunk_size=2**20,
                                                            metadata={"filename": "demo.txt"})
        uploader.upload()
        status = requests.get(f"{base}/api/upload/status/{uploader.url.rsplit('/', 1)[-1]}", timeout=10).json()
        assert status["status"] == "completed"
        stored = requests.get(f"{demo.group(1)}/_emulator/uploads/{status['notion']['file_upload_id']}",
                              timeout=10).json()
        assert stored["sha256"] == sha
        children = psutil.Process(proc.pid).children(recursive=True)
    finally:
        proc.signal(signal.SIGTERM)
        code = proc.wait(60)
    assert code == 0, proc.output()[-2000:]
    gone, alive = psutil.wait_procs(children, timeout=20)
    assert not alive, f"left running: {[p.cmdline() for p in alive]}"
