"""Structured logs: JSON lines or logfmt (LOG_FORMAT), the seeds' event names, an upload id on
every line, secrets masked (engine/logs.py)."""
from __future__ import annotations

import io
import json
import logging
import re
import time
from pathlib import Path

import pytest
import requests

from engine.logs import (
    EventLog,
    JsonFormatter,
    KeyValueFormatter,
    PressureWatch,
    RedactingFilter,
    Redactor,
    configured_secrets,
)
from harness.processes import wait_until
from harness.relay import MIB
from harness.stacks import unthrottled_stack

UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")
READY_LINE = re.compile(r"^relay listening on http://\S+$")  # stdout's one plain line, for scripts
LOGFMT_PAIR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|[^\s"=]+)')
# The service's events that are about one upload (NOTION_RETRY of a create comes before any id).
UPLOAD_EVENTS = {"UPLOAD_START", "PART_SUCCESS", "PART_FAILURE", "TIMEOUT_EVENT", "CHECKPOINT_SAVED",
                 "CHECKPOINT_RETRY", "UPLOAD_COMPLETE", "UPLOAD_FAILED", "UPLOAD_RESUMED", "UPLOAD_CLAIMED",
                 "UPLOAD_RELEASED", "LOCK_LOST", "UPLOAD_EXPIRED", "UPLOAD_TERMINATED"}


# --- units ------------------------------------------------------------------------------------

def make_logger(formatter: logging.Formatter, secrets: list[str]) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(RedactingFilter(Redactor(secrets)))
    logger = logging.getLogger(f"test.logs.{id(stream)}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, stream


def test_json_lines_carry_event_fields_and_upload_id():
    logger, stream = make_logger(JsonFormatter(), [])
    EventLog(logger)("PART_SUCCESS", {"upload_id": "a" * 32, "part": 2, "size": 10, "duration_s": 0.5,
                                      "attempts": 1})
    logger.info("startup done")
    logger.info("200 PUT /api/upload/%s (127.0.0.1) 3ms", "b" * 32)
    first, second, third = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert first["event"] == "PART_SUCCESS" and first["upload_id"] == "a" * 32 and first["level"] == "INFO"
    assert (first["part"], first["size"], first["attempts"]) == (2, 10, 1) and "msg" not in first
    assert second["upload_id"] is None and second["msg"] == "startup done"
    assert third["upload_id"] == "b" * 32  # found in a request line's path


def test_logfmt_quotes_what_needs_quoting():
    logger, stream = make_logger(KeyValueFormatter(), [])
    EventLog(logger)("PART_FAILURE", {"upload_id": "c" * 32, "reason": 'say "hi"\nthere', "attempt": 1})
    line = stream.getvalue().rstrip("\n")
    assert "\n" not in line
    assert line.startswith("ts=") and " level=WARNING logger=" in line
    assert f"event=PART_FAILURE upload_id={'c' * 32} " in line
    assert r'reason="say \"hi\"\nthere"' in line
    assert dict(LOGFMT_PAIR.findall(line))["attempt"] == "1"


def test_the_seeds_wording_for_breakers_checkpoints_and_memory_pressure():
    logger, stream = make_logger(KeyValueFormatter(), [])
    events = EventLog(logger)
    events("CIRCUIT_BREAKER", {"breaker": "notion_api", "state": "OPEN", "previous": "CLOSED"})
    events("CHECKPOINT_SAVED", {"upload_id": "d" * 32, "part": 1})
    watch = PressureWatch(lambda event, **fields: events(event, fields))
    for state in ("LOW_LOAD", "HIGH_LOAD", "HIGH_LOAD", "CRITICAL", "CRITICAL", "LOW_LOAD", "HIGH_LOAD"):
        watch.observe(state, 460.0, 512.0, 1)
    text = stream.getvalue()
    assert re.search(r"Circuit breaker notion_api OPENED", text)
    assert re.search(r"event=CHECKPOINT_SAVED upload_id=d{32} .*Checkpoint saved", text)
    # Once per change into HIGH_LOAD or CRITICAL, not once per tick.
    assert [m for m in re.findall(r"resource_state=(\w+)", text)] == ["HIGH_LOAD", "CRITICAL", "HIGH_LOAD"]


def test_secrets_are_masked_in_message_arguments_fields_and_tracebacks():
    notion, upload = "secret_" + "N" * 30, "upl-" + "U" * 30
    logger, stream = make_logger(JsonFormatter(), configured_secrets(notion, [upload], "redis://:p%40ss-word-1@h:1/0"))
    logger.info("token %s in args, %s in message", notion, "x")
    logger.info(f"url-encoded: ?t={requests.utils.quote(upload, safe='')} and plain {upload}")
    EventLog(logger)("NOTION_RETRY", {"operation": "create", "reason": f"saw {notion}"})
    logger.info("redis password p@ss-word-1")
    try:
        raise RuntimeError(f"failed with Authorization: Bearer {notion}")
    except RuntimeError:
        logger.exception("boom for %s", upload)
    out = stream.getvalue()
    for secret in (notion, upload, "p@ss-word-1"):
        assert secret not in out
    assert out.count("***") >= 6
    lines = [json.loads(line) for line in out.splitlines()]
    assert "RuntimeError: failed with Authorization: Bearer ***" in lines[-1]["exc"]


def test_short_values_are_not_treated_as_secrets():
    assert Redactor(["ab", ""]).redact("a tab, abc") == "a tab, abc"


# --- the relay --------------------------------------------------------------------------------

def parse_logfmt(line: str) -> dict[str, object]:
    pairs = LOGFMT_PAIR.findall(line)
    assert " ".join(f"{k}={v}" for k, v in pairs) == line, f"not logfmt: {line!r}"
    out: dict[str, object] = {}
    for key, raw in pairs:
        text = json.loads(raw, strict=False) if raw.startswith('"') else raw
        out[key] = None if text == "-" and key == "upload_id" else text
    return out


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_relay_log_lines_parse_and_name_their_upload(tmp_path: Path, log_format: str):
    stack = unthrottled_stack(
        tmp_path, LOG_FORMAT=log_format, INITIAL_RETRY_DELAY="0.05", MAX_RETRY_DELAY="0.2", TOTAL_TIMEOUT="2",
        # one Notion failure opens the breaker, briefly (the seeds' rule: no failure-rate window)
        CB_NOTION_FAILURE_THRESHOLD="1", CB_NOTION_TIMEOUT_DURATION="0.3", CB_NOTION_WINDOW="0",
        # thresholds under what any process uses: HIGH_LOAD from the first sample (never CRITICAL)
        TOTAL_MEMORY_MB="100000", MEMORY_LOW_THRESHOLD="1", MEMORY_MEDIUM_THRESHOLD="2",
        MEMORY_HIGH_THRESHOLD="3", MEMORY_CRITICAL_THRESHOLD="99999")
    relay, emulator = stack.relay, stack.emulator
    try:
        base = relay.url
        ids = []
        for fault in ({"kinds": {"stall": 1}, "stall_s": 30}, {"kinds": {"500": 1}}):
            emulator.set_faults({"rate": 1, "endpoints": ["send"], "count": 1, **fault})
            r = requests.post(f"{base}/api/upload/create-session", json={"filename": "log.txt", "fileSize": MIB},
                              timeout=30)
            assert r.status_code == 201, r.text
            upload_id = r.json()["upload_id"]
            ids.append(upload_id)
            assert requests.put(f"{base}/api/upload/{upload_id}", data=b"l" * MIB, timeout=60).status_code == 200
        assert requests.get(f"{base}/api/upload/status/{'0' * 32}", timeout=10).status_code == 404
        assert requests.post(f"{base}/api/upload/create-session", data=b"{", timeout=10).status_code == 400
        wait_until(lambda: "MEMORY_PRESSURE" in relay.output(), timeout_s=10)
        time.sleep(1.2)  # two more samples: still HIGH_LOAD, so no second MEMORY_PRESSURE
    finally:
        stack.close()

    parse = json.loads if log_format == "json" else parse_logfmt
    records = []
    for line in relay.output().splitlines():
        if READY_LINE.match(line):
            continue
        record = parse(line)
        assert isinstance(record, dict), line
        assert {"ts", "level", "logger", "upload_id"} <= set(record), line
        records.append(record)
    events = [r for r in records if r.get("event")]
    names = {r["event"] for r in events}
    assert {"UPLOAD_START", "PART_SUCCESS", "PART_FAILURE", "TIMEOUT_EVENT", "CHECKPOINT_SAVED",
            "UPLOAD_COMPLETE", "MEMORY_PRESSURE", "CIRCUIT_BREAKER"} <= names, names
    for r in events:
        if r["event"] in UPLOAD_EVENTS:
            assert r["upload_id"] in ids, r
    assert [r["event"] for r in events].count("MEMORY_PRESSURE") == 1
    messages = [str(r.get("msg", "")) for r in records]
    assert any(re.search(r"Circuit breaker notion_api OPENED", m) for m in messages)
    assert any(m.startswith("Checkpoint saved") for m in messages)
    # Request lines about an upload carry its id too.
    puts = [r for r in records if r["logger"] == "tornado.access" and " PUT " in str(r.get("msg"))]
    assert {r["upload_id"] for r in puts} == set(ids)
    timeouts = [r for r in events if r["event"] == "TIMEOUT_EVENT"]
    assert timeouts[0]["upload_id"] == ids[0] and timeouts[0]["level"] == "WARNING"
    assert "Traceback" not in relay.output()
