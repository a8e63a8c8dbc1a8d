"""GET /metrics (parses with prometheus-client's parser; counters move during an upload), the
loop-lag monitor, and health answering quickly while 25 uploads run."""
from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from engine.looplag import LoopLagMonitor
from engine.metrics import RelayMetrics, Sources
from harness.processes import wait_until
from harness.relay import MIB, make_file
from harness.stacks import Stack, unthrottled_stack

TUS = {"Tus-Resumable": "1.0.0"}
# The upload below is cut into three parts (10, 10 and 5 MiB), each met by its own fault.
PART = 10 * MIB
Samples = dict[tuple[str, frozenset], float]


@pytest.fixture(scope="module")
def obs_stack(tmp_path_factory) -> Iterator[Stack]:
    # Quick retries, so the faults below cost little time; room for 25 uploads at once.
    s = unthrottled_stack(tmp_path_factory.mktemp("metrics"), INITIAL_RETRY_DELAY="0.05", MAX_RETRY_DELAY="0.2",
                          MAX_CONCURRENT_UPLOADS="25", QUEUE_SIZE_LIMIT="0", PART_SIZE_MB=str(PART // MIB))
    yield s
    s.close()


def scrape(base: str) -> tuple[Samples, set[str]]:
    r = requests.get(f"{base}/metrics", timeout=10)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain")
    samples: Samples = {}
    families = set()
    for family in text_string_to_metric_families(r.text):
        families.add(family.name)
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples, families


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def create_tus(base: str, size: int, name: str = "data.txt") -> str:
    import base64

    meta = f"filename {base64.b64encode(name.encode()).decode()}"
    r = requests.post(f"{base}/files/", headers={**TUS, "Upload-Length": str(size), "Upload-Metadata": meta},
                      timeout=30)
    assert r.status_code == 201, r.text
    return r.headers["Location"].rsplit("/", 1)[-1]


def patch(base: str, upload_id: str, offset: int, data: bytes) -> requests.Response:
    return requests.patch(f"{base}/files/{upload_id}", data=data, timeout=60, headers={
        **TUS, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"})


def test_metrics_parse_and_move_during_an_upload(obs_stack):
    base = obs_stack.relay.url
    before, families = scrape(base)
    # Everything the issue asks for is there from the start.
    assert {"relay_uploads", "relay_bytes_received", "relay_bytes_confirmed", "relay_part_send_duration_seconds",
            "relay_notion_retries", "relay_notion_rate_limited", "relay_circuit_breaker_state",
            "relay_request_budget_tokens", "relay_concurrency_limit", "relay_resident_memory_bytes",
            "relay_event_loop_lag_seconds", "relay_event_loop_lag_max_seconds", "relay_event_loop_lag_p99_seconds",
            "relay_uploads_started", "relay_uploads_completed", "relay_events"} <= families
    assert value(before, "relay_circuit_breaker_state", breaker="notion_api", state="CLOSED") == 1
    assert value(before, "relay_concurrency_limit") >= 1
    assert value(before, "relay_resident_memory_bytes") > 10 * MIB
    assert value(before, "relay_request_budget_tokens") > 0

    size = 2 * PART + 5 * MIB  # three parts of 10, 10 and 5 MiB
    payload = (bytes(range(256)) * 4096) * (size // MIB)
    upload_id = create_tus(base, size)
    assert patch(base, upload_id, 0, payload[:PART]).status_code == 204

    def part_one_confirmed() -> Samples | None:
        now, _ = scrape(base)
        confirmed = value(now, "relay_bytes_confirmed_total") - value(before, "relay_bytes_confirmed_total")
        return now if confirmed >= PART else None

    during = wait_until(part_one_confirmed, timeout_s=30, message="part 1 confirmed in metrics")
    assert value(during, "relay_bytes_received_total") - value(before, "relay_bytes_received_total") == PART
    assert value(during, "relay_uploads", state="receiving") == 1
    # Counted by where the upload goes: NOTION_PARENT_PAGE_ID, a page.
    def started(samples: Samples) -> float:
        return value(samples, "relay_uploads_started_total", destination_kind="page")

    def completed(samples: Samples) -> float:
        return value(samples, "relay_uploads_completed_total", destination_kind="page")

    assert started(during) == started(before) + 1 and completed(during) == completed(before)
    assert ("relay_uploads_started_total", frozenset({("destination_kind", "database")})) in before  # exported at 0
    assert value(during, "relay_part_send_duration_seconds_count", outcome="success") >= 1

    # Part 2 meets a 429 from Notion, part 3 a 503: each is retried, counted by reason.
    obs_stack.emulator.set_faults({"rate": 1, "kinds": {"429": 1}, "endpoints": ["send"], "count": 1,
                                   "retry_after_s": 1})
    assert patch(base, upload_id, PART, payload[PART: 2 * PART]).status_code == 204
    wait_until(lambda: obs_stack.relay.status(upload_id)["parts_confirmed"] == 2, timeout_s=30,
               message="part 2 confirmed")
    obs_stack.emulator.set_faults({"rate": 1, "kinds": {"503": 1}, "endpoints": ["send"], "count": 1})
    r = patch(base, upload_id, 2 * PART, payload[2 * PART:])
    assert r.status_code == 204 and r.headers.get("Upload-Status") == "completed", r.text
    after, _ = scrape(base)
    assert value(after, "relay_bytes_received_total") - value(before, "relay_bytes_received_total") == size
    assert value(after, "relay_bytes_confirmed_total") - value(before, "relay_bytes_confirmed_total") == size
    assert completed(after) == completed(before) + 1
    assert value(after, "relay_parts_sent_total") - value(before, "relay_parts_sent_total") == 3
    retries = {reason: value(after, "relay_notion_retries_total", operation="send", reason=reason)
               for reason in ("http_429", "http_503")}
    assert retries == {"http_429": 1, "http_503": 1}
    assert value(after, "relay_notion_rate_limited_total") - value(before, "relay_notion_rate_limited_total") == 1
    assert value(after, "relay_part_send_duration_seconds_count", outcome="failure") == 2
    assert value(after, "relay_events_total", event="PART_SUCCESS") >= 3
    assert value(after, "relay_events_total", event="CHECKPOINT_SAVED") >= 3


@pytest.mark.inprocess
def test_uploads_are_counted_per_destination_kind():
    metrics = RelayMetrics(Sources(None, [], None, None, None, None), process_metrics=False)  # type: ignore[arg-type]

    def counts(counter) -> dict[str, float]:
        return {s.labels["destination_kind"]: s.value for f in counter.collect() for s in f.samples
                if s.name.endswith("_total")}

    assert counts(metrics.started) == counts(metrics.completed) == {"page": 0, "database": 0, "none": 0}
    for kind in ("database", "database", "page", None):
        metrics.on_event("UPLOAD_START", {"upload_id": "u", "destination": "d", "destination_kind": kind})
    metrics.on_event("UPLOAD_COMPLETE", {"upload_id": "u", "destination_kind": "database"})
    metrics.on_event("UPLOAD_COMPLETE", {"upload_id": "u"})  # an event without the field: nowhere
    assert counts(metrics.started) == {"page": 1, "database": 2, "none": 1}
    assert counts(metrics.completed) == {"page": 0, "database": 1, "none": 1}


def test_metrics_offer_openmetrics_when_asked(obs_stack):
    r = requests.get(f"{obs_stack.relay.url}/metrics", headers={"Accept": "application/openmetrics-text"}, timeout=10)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/openmetrics-text")
    assert r.text.rstrip().endswith("# EOF")


def test_loop_lag_window_max_and_p99():
    monitor = LoopLagMonitor(interval_s=0.25, window_s=10)
    for i in range(200):
        monitor.record(now=i * 0.05, lag_s=0.001)
    monitor.record(now=10.0, lag_s=0.5)
    stats = monitor.stats()
    assert stats.last_s == 0.5 and stats.max_s == 0.5
    assert stats.p99_s == pytest.approx(0.001)  # one slow tick in 200 is above the 99th percentile
    monitor.record(now=25.0, lag_s=0.002)  # the window moved past every earlier sample
    assert monitor.stats().max_s == 0.002 and monitor.stats().samples == 1
    snapshot = monitor.snapshot()
    assert snapshot["status"] == "healthy" and snapshot["max_lag_ms"] == 2.0


def test_health_answers_quickly_while_25_uploads_run(obs_stack, tmp_path):
    base = obs_stack.relay.url
    path = tmp_path / "twelve.txt"
    size = 12 * MIB  # one single_part send each
    make_file(path, size, seed=6)
    ids = []
    for _ in range(25):
        r = requests.post(f"{base}/api/upload/create-session", json={"filename": "twelve.txt", "fileSize": size},
                          timeout=30)
        assert r.status_code == 201, r.text
        ids.append(r.json()["upload_id"])

    latencies: list[float] = []
    health_statuses: set[int] = set()
    done = threading.Event()

    def poll_health() -> None:
        with requests.Session() as session:
            while not done.is_set():
                started = time.monotonic()
                r = session.get(f"{base}/api/system/health", timeout=10)
                latencies.append(time.monotonic() - started)
                health_statuses.add(r.status_code)
                time.sleep(0.02)

    def put(upload_id: str) -> int:
        with open(path, "rb") as f:
            return requests.put(f"{base}/api/upload/{upload_id}", data=f, timeout=120).status_code

    poller = threading.Thread(target=poll_health, daemon=True)
    poller.start()
    try:
        with ThreadPoolExecutor(max_workers=25) as pool:
            statuses = list(pool.map(put, ids))
    finally:
        done.set()
        poller.join(15)
    assert statuses == [200] * 25
    assert health_statuses == {200} and len(latencies) >= 10
    # The health handler reads state (no I/O); slow answers would mean a blocked loop.
    assert statistics.median(latencies) < 0.1, sorted(latencies)[-5:]
    assert max(latencies) < 1.0, sorted(latencies)[-5:]
    loop = requests.get(f"{base}/api/system/health", timeout=10).json()["components"]["event_loop"]
    assert loop["monitoring"] and loop["samples"] > 0
    assert loop["max_lag_ms"] < 1000, loop
