from __future__ import annotations

import subprocess

import pytest

from bench.payload import DEFAULT_PART_BYTES
from harness.processes import PYTHON, ROOT
from settings import Settings, SettingsError


def test_defaults_match_the_seeds_and_the_design():
    s = Settings.from_env({})
    assert (s.host, s.port, s.part_size_mb) == ("127.0.0.1", 8888, 20)
    assert (s.min_workers, s.default_workers, s.max_workers) == (1, 2, 3)
    assert (s.connection_timeout_s, s.read_timeout_s, s.total_timeout_s) == (30, 300, 450)
    assert s.notion_version == "2025-09-03"
    assert s.spool_dir == s.data_dir / "spool"
    assert s.demo_mode


def test_the_benchmarks_cut_parts_as_the_relay_does_by_default():
    # The bare libcurl baseline and the dyno's budget bound use the relay's default part size.
    assert DEFAULT_PART_BYTES == Settings.from_env({}).part_size_bytes


@pytest.mark.parametrize("env, name", [
    ({"PORT": "eighty"}, "PORT"),
    ({"PART_SIZE_MB": "4"}, "PART_SIZE_MB"),
    ({"PART_SIZE_MB": "21"}, "PART_SIZE_MB"),
    ({"READ_TIMEOUT": "-1"}, "READ_TIMEOUT"),
    ({"NOTION_PARENT_PAGE_ID": "not-a-page"}, "NOTION_PARENT_PAGE_ID"),
    ({"CHECKPOINT_ENABLED": "maybe"}, "CHECKPOINT_ENABLED"),
    ({"MIN_WORKERS": "4"}, "MIN_WORKERS"),
    ({"MEMORY_LOW_THRESHOLD": "600"}, "MEMORY_LOW_THRESHOLD"),
    ({"NOTION_RATE_LIMIT": "0/60"}, "NOTION_RATE_LIMIT"),
])
def test_a_bad_value_names_the_variable(env, name):
    with pytest.raises(SettingsError) as info:
        Settings.from_env(env)
    assert name in str(info.value)


def test_page_id_accepts_a_pasted_notion_url():
    s = Settings.from_env({"NOTION_PARENT_PAGE_ID": "https://www.notion.so/Team-Files-0123456789abcdef0123456789abcdef"})
    assert s.notion_parent_page_id == "01234567-89ab-cdef-0123-456789abcdef"


def test_redacted_hides_the_token():
    s = Settings.from_env({"NOTION_TOKEN": "secret_abc", "REDIS_URL": "redis://user:pw@host:6379/0"})
    shown = str(s.redacted())
    assert "secret_abc" not in shown and "pw@" not in shown


def test_server_stops_with_one_clear_line_on_a_bad_value():
    result = subprocess.run([PYTHON, str(ROOT / "server.py")], env={"PART_SIZE_MB": "99", "PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "PART_SIZE_MB" in lines[0]
    assert "Traceback" not in result.stderr
