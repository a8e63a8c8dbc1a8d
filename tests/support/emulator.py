"""The emulator for pytest: the `emulator` fixture (a started emulator, stopped after the test)
and `error_code`, which checks Notion's error shape. Starting and driving the emulator is
harness/emulator.py's.

    from tests.support.emulator import emulator  # noqa: F401  (the fixture)

    def test_something(emulator):
        ...  # emulator.url, emulator.token, emulator.upload(id), emulator.set_faults({...})
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.emulator import EmulatorProcess, start_emulator


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[EmulatorProcess]:
    """A started emulator with default settings; stopped after the test."""
    emu = start_emulator(tmp_path)
    try:
        yield emu
    finally:
        emu.stop()


def error_code(response: Any) -> str:
    """The Notion error code of a response (asserting Notion's error shape on the way)."""
    body = response.json()
    assert body["object"] == "error" and body["status"] == response.status_code, body
    assert isinstance(body["message"], str) and body["message"], body
    assert re.fullmatch(r"[0-9a-f-]{36}", body["request_id"]), body
    return body["code"]
