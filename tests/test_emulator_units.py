"""The emulator's pure pieces on their own: file types, the token bucket on a fake clock,
the fault plan, and the streaming form parser fed in awkward chunk sizes."""
from __future__ import annotations

import ast
import hashlib
import io
from pathlib import Path
from typing import BinaryIO

import pytest

from emulator import filetypes, rules
from emulator.config import RateLimit
from emulator.errors import NotionError
from emulator.faults import FaultConfigError, FaultInjector, FaultPlan
from emulator.multipart import FormError, FormStream
from emulator.ratelimit import RateLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_burst_refill_and_retry_after() -> None:
    clock = FakeClock()
    limiter = RateLimiter(RateLimit(180, 60), clock=clock)
    assert [limiter.check("t") for _ in range(180)] == [0] * 180
    assert limiter.check("t") == 1  # 1/3 s to the next token, rounded up
    clock.now += 1 / 3
    assert limiter.check("t") == 0
    clock.now += 60  # refills to capacity, never beyond
    assert [limiter.check("t") for _ in range(180)] == [0] * 180
    assert limiter.check("t") >= 1
    assert limiter.check("other") == 0


def test_retry_after_rounds_up_to_whole_seconds() -> None:
    clock = FakeClock()
    limiter = RateLimiter(RateLimit(2, 10), clock=clock)
    limiter.check("t")
    limiter.check("t")
    assert limiter.check("t") == 5
    clock.now += 4.2
    assert limiter.check("t") == 1


def test_rate_limit_parsing() -> None:
    assert RateLimit.parse("180/60") == RateLimit(180, 60.0)
    for bad in ("180", "a/b", "0/60", "10/0"):
        with pytest.raises(ValueError):
            RateLimit.parse(bad)


@pytest.mark.parametrize(
    "filename, content_type, expected",
    [
        ("a.txt", None, ("a.txt", "text/plain")),
        ("A.JPG", None, ("A.JPG", "image/jpeg")),
        ("clip.mp4", "audio/mp4", ("clip.mp4", "audio/mp4")),
        ("clip.mkv", "video/mp4", ("clip.mkv", "video/mp4")),
        ("notes", "application/json", ("notes.json", "application/json")),
        (None, "image/png", (None, "image/png")),
        (None, None, (None, None)),
    ],
)
def test_filetype_resolution(filename: str | None, content_type: str | None, expected: tuple) -> None:
    resolved = filetypes.resolve(filename, content_type)
    assert (resolved.filename, resolved.content_type) == expected


@pytest.mark.parametrize(
    "filename, content_type",
    [("a.zip", None), (".txt", None), ("a.", None), ("a.txt", "image/png"), ("a.wav", "audio/x-wav")],
)
def test_filetype_rejections(filename: str, content_type: str | None) -> None:
    with pytest.raises(NotionError) as err:
        filetypes.resolve(filename, content_type)
    assert err.value.status_code == 400 and err.value.code == "validation_error"


def test_every_table_type_has_an_extension_and_blocks_fit() -> None:
    for kind in filetypes.SUPPORTED_TYPES:
        assert filetypes.resolve("x", kind).filename.startswith("x.")
    assert filetypes.fits_block("image", "image/png") and not filetypes.fits_block("image", "text/plain")
    assert filetypes.fits_block("video", "application/mp4") and filetypes.fits_block("file", "text/plain")


def test_the_table_is_notions_and_the_emulator_imports_nothing_from_the_relay() -> None:
    # every extension and MIME type of Notion's "Supported file types" table
    documented = (
        "aac adts mid midi mp3 mpga m4a m4b mp4 oga ogg wav wma "
        "pdf txt json doc dot docx dotx xls xlt xla xlsx xltx ppt pot pps ppa pptx potx "
        "gif heic jpeg jpg png svg tif tiff webp ico "
        "amv asf wmv avi f4v flv gifv m4v mkv webm mov qt mpeg"
    ).split()
    assert sorted(filetypes.EXTENSIONS) == sorted(documented)
    assert {"audio/x-ms-wma", "image/vnd.microsoft.icon", "video/x-flv", "application/mp4"} <= filetypes.SUPPORTED_TYPES
    assert len(filetypes.SUPPORTED_TYPES) == 7 + 12 + 8 + 10
    assert filetypes.resolve("clip.flv", "video/x-flv").content_type == "video/x-flv"
    # the emulator is the oracle: it must not share code with what it judges
    package = Path(filetypes.__file__).parent
    for module in package.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            assert not any(n == "engine" or n.startswith("engine.") for n in names), module


def test_compact_ranges_and_uuid_normalising() -> None:
    assert rules.compact_ranges([1, 2, 3, 7, 9, 10]) == "1-3, 7, 9-10"
    assert rules.normalize_uuid("3C90C3CC0D444B5088888DD25736052A") == "3c90c3cc-0d44-4b50-8888-8dd25736052a"
    assert rules.normalize_uuid("3c90c3cc-0d44-4b50-8888") is None


def test_fault_plan_draws_are_seeded_and_counted() -> None:
    plan = FaultPlan.parse({"rate": 0.3, "kinds": {"500": 1, "reset": 3}, "endpoints": ["send"], "seed": 3})
    a, b = FaultInjector(plan), FaultInjector(plan)
    draws = [a.pick("send") for _ in range(200)]
    assert draws == [b.pick("send") for _ in range(200)]
    assert 30 < sum(d is not None for d in draws) < 90
    assert a.pick("create") is None
    once = FaultInjector(FaultPlan.parse({"rate": 1, "kinds": {"503": 1}, "count": 2}))
    assert [once.pick("users_me") for _ in range(3)] == ["503", "503", None]
    with pytest.raises(FaultConfigError):
        FaultPlan.parse({"rate": 0.5, "kinds": {"500": 0}})


def _form(fields: list[tuple[str, str | None, str | None, bytes]], boundary: str = "XyZ") -> bytes:
    out = io.BytesIO()
    for name, filename, content_type, value in fields:
        out.write(f"--{boundary}\r\n".encode())
        disposition = f'Content-Disposition: form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out.write(disposition.encode() + b"\r\n")
        if content_type:
            out.write(f"Content-Type: {content_type}\r\n".encode())
        out.write(b"\r\n" + value + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue()


@pytest.mark.parametrize("chunk", [1, 7, 64 * 1024])
def test_form_stream_writes_the_file_part_in_any_chunking(chunk: int) -> None:
    payload = bytes(range(256)) * 300 + b"\r\n--XyZ-not-a-boundary"
    body = _form([("part_number", None, None, b"12"), ("file", "a.txt", "text/plain", payload)])
    sink = io.BytesIO()
    sink.close = lambda: None  # type: ignore[method-assign]  # keep the bytes readable
    form = FormStream(b"XyZ", "file", lambda: sink, max_file_bytes=10**6)
    for i in range(0, len(body), chunk):
        form.feed(body[i : i + chunk])
    form.finish()
    assert sink.getvalue() == payload
    assert form.file is not None and form.file.size == len(payload)
    assert form.file.sha256 == hashlib.sha256(payload).hexdigest()
    assert (form.file.filename, form.file.content_type) == ("a.txt", "text/plain")
    assert form.fields == {"part_number": "12"}


def test_form_stream_stops_storing_past_the_limit_and_rejects_bad_forms() -> None:
    sink = io.BytesIO()
    sink.close = lambda: None  # type: ignore[method-assign]
    form = FormStream(b"XyZ", "file", lambda: sink, max_file_bytes=10)
    form.feed(_form([("file", "a.txt", None, b"x" * 100)]))
    form.finish()
    assert form.oversized and form.file is not None and form.file.size == 100
    assert len(sink.getvalue()) <= 10

    def never() -> BinaryIO:
        raise AssertionError("no sink expected")

    for body in (
        _form([("file", "a", None, b"1"), ("file", "b", None, b"2")]),  # two file parts
        _form([("n", None, None, b"1"), ("n", None, None, b"2")]),  # a repeated field
        _form([("n", None, None, b"1" * 5000)]),  # a huge text field
    ):
        form = FormStream(b"XyZ", "file", lambda: io.BytesIO(), max_file_bytes=10)
        with pytest.raises(FormError):
            form.feed(body)
            form.finish()
    truncated = FormStream(b"XyZ", "file", never, max_file_bytes=10)
    truncated.feed(_form([("n", None, None, b"1")])[:-10])
    with pytest.raises(FormError):
        truncated.finish()
