"""Crash-safe persistence of the emulator's records: an append-only journal of JSON lines.

Why a journal: a part send must not rewrite a big file (an upload's record lists up to 1000
parts), and a crash (SIGKILL) at any moment must leave a state the next start can read. Each
change is appended as one line and written with one `write()` before the request that made it
is answered, so what the emulator acknowledged is in the kernel's page cache and survives the
death of the process (not a power cut: lines are not fsync'd one by one; compaction and a clean
stop fsync). A line is applied whole or not at all: a torn last line (a crash in the middle of
a write) is dropped and cut off at the next start.

File: `<data-dir>/journal.jsonl`. Each line is a JSON array of operations applied together:

    ["put", kind, id, {field: value, …}]      a whole record (creation; compaction)
    ["set", kind, id, {field: value, …}]      some of its fields changed
    ["item", kind, id, field, key, value]     one entry of a dict field was set
    ["unset", kind, id, field, key]           one entry of a dict field was removed
    ["del", kind, id]                         the record is gone

Compaction: once the journal is larger than `compact_bytes` and twice its size after the last
compaction, every live record is written as one "put" line to `journal.jsonl.tmp`, fsync'd and
renamed over the journal (then the directory is fsync'd): a crash leaves the old journal or the
new one, never a mix. Amortised, that is O(1) per change.

Records are dataclasses that inherit `Persistent` and name their `KIND`; `Journal.collection`
registers the class and returns the dict (id → record) it keeps up to date. Assigning a field
of a registered record, or changing a list or dict held in a field (`upload.parts[3] = …`,
`upload.attached_to.append(…)`), is journaled by itself: nothing else needs to call "save".
Fields named in `TRANSIENT` are not persisted (they take their default after a restart).
Values are JSON types, lists/tuples/dicts of them, and nested dataclasses; decoding follows the
field's type hints (so `dict[int, PartInfo]` comes back with int keys and PartInfo values).
Objects inside a container are replaced, never mutated in place (that would not be seen).
"""
from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
import os
import types
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, TypeVar

log = logging.getLogger("emulator.journal")

JOURNAL_NAME = "journal.jsonl"
LOCK_NAME = ".lock"
DEFAULT_COMPACT_BYTES = 4 * 2**20

R = TypeVar("R", bound="Persistent")


class DataDirInUse(RuntimeError):
    """Another process holds the data directory's lock."""


# --- records -----------------------------------------------------------------------------------


class Persistent:
    """Base of the journaled dataclasses. `KIND` names the record kind in the journal; the
    record's `id` attribute is its key."""

    KIND: ClassVar[str] = ""
    TRANSIENT: ClassVar[frozenset[str]] = frozenset()

    def __setattr__(self, name: str, value: Any) -> None:
        if name in persisted_fields(type(self)):
            if isinstance(value, list):
                value = TrackedList.bound(value, self, name)
            elif isinstance(value, dict):
                value = TrackedDict.bound(value, self, name)
            object.__setattr__(self, name, value)
            journal = self.__dict__.get("_journal")
            if journal is not None:
                journal.field_changed(self, name)
        else:
            object.__setattr__(self, name, value)


_FIELDS_CACHE: dict[type, frozenset[str]] = {}
_HINTS_CACHE: dict[type, dict[str, Any]] = {}


def persisted_fields(cls: type) -> frozenset[str]:
    found = _FIELDS_CACHE.get(cls)
    if found is None:
        transient = getattr(cls, "TRANSIENT", frozenset())
        found = frozenset(f.name for f in dataclasses.fields(cls) if f.name not in transient)
        _FIELDS_CACHE[cls] = found
    return found


def _hints(cls: type) -> dict[str, Any]:
    found = _HINTS_CACHE.get(cls)
    if found is None:
        found = typing.get_type_hints(cls)
        _HINTS_CACHE[cls] = found
    return found


class TrackedList(list):
    """A list held in a record's field: every change journals the whole (small) list."""

    _owner: Persistent | None = None
    _field = ""

    @classmethod
    def bound(cls, items: Any, owner: Persistent, field: str) -> "TrackedList":
        tracked = cls(items)
        tracked._owner, tracked._field = owner, field
        return tracked

    def _changed(self) -> None:
        owner = self._owner
        journal = owner.__dict__.get("_journal") if owner is not None else None
        if journal is not None and getattr(owner, self._field, None) is self:
            journal.field_changed(owner, self._field)


def _list_mutator(name: str):
    base = getattr(list, name)

    def method(self, *args, **kwargs):
        result = base(self, *args, **kwargs)
        self._changed()
        return self if name in ("__iadd__", "__imul__") else result

    method.__name__ = name
    return method


for _name in ("append", "extend", "insert", "remove", "pop", "clear", "sort", "reverse",
              "__setitem__", "__delitem__", "__iadd__", "__imul__"):
    setattr(TrackedList, _name, _list_mutator(_name))


class TrackedDict(dict):
    """A dict held in a record's field: setting or deleting one key journals that key only
    (an upload's `parts` grows by one entry per send, never rewritten whole)."""

    _owner: Persistent | None = None
    _field = ""

    @classmethod
    def bound(cls, items: Any, owner: Persistent, field: str) -> "TrackedDict":
        tracked = cls(items)
        tracked._owner, tracked._field = owner, field
        return tracked

    def _journal(self):
        owner = self._owner
        journal = owner.__dict__.get("_journal") if owner is not None else None
        if journal is not None and getattr(owner, self._field, None) is self:
            return journal
        return None

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)
        journal = self._journal()
        if journal is not None:
            journal.item_changed(self._owner, self._field, key, value)

    def __delitem__(self, key: Any) -> None:
        super().__delitem__(key)
        journal = self._journal()
        if journal is not None:
            journal.item_removed(self._owner, self._field, key)

    def _whole(self) -> None:
        journal = self._journal()
        if journal is not None:
            journal.field_changed(self._owner, self._field)


def _dict_mutator(name: str):
    base = getattr(dict, name)

    def method(self, *args, **kwargs):
        result = base(self, *args, **kwargs)
        self._whole()
        return self if name == "__ior__" else result

    method.__name__ = name
    return method


for _name in ("pop", "popitem", "clear", "update", "setdefault", "__ior__"):
    setattr(TrackedDict, _name, _dict_mutator(_name))


# --- JSON codec driven by type hints -------------------------------------------------------------


def encode(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = persisted_fields(type(value))
        return {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value) if f.name in names}
    if isinstance(value, dict):
        return {_encode_key(k): encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    raise TypeError(f"cannot journal a {type(value).__name__}")


def _encode_key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, (int, float)) and not isinstance(key, bool):
        return str(key)
    raise TypeError(f"cannot journal a dict key of type {type(key).__name__}")


def decode(hint: Any, data: Any) -> Any:
    if hint is Any or data is None:
        return data
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        for option in options:
            try:
                return decode(option, data)
            except (TypeError, ValueError):
                continue
        return data
    if origin is list:
        return [decode(args[0] if args else Any, v) for v in data]
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(decode(args[0], v) for v in data)
        return tuple(decode(a, v) for a, v in zip(args, data, strict=False)) if args else tuple(data)
    if origin is dict:
        kt, vt = args if args else (Any, Any)
        return {decode_key(kt, k): decode(vt, v) for k, v in data.items()}
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return from_json(hint, data)
    if hint is float and isinstance(data, int):
        return float(data)
    if isinstance(hint, type) and hint in (int, str, bool, float) and not isinstance(data, hint):
        raise TypeError(f"expected {hint.__name__}, got {type(data).__name__}")
    return data


def decode_key(hint: Any, key: str) -> Any:
    if hint is int:
        return int(key)
    if hint is float:
        return float(key)
    return key


def from_json(cls: type, data: dict[str, Any]) -> Any:
    """Build a dataclass from its journaled fields; unknown keys are ignored and missing ones
    take their defaults (records written by an older or newer emulator still load)."""
    hints = _hints(cls)
    names = persisted_fields(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.init and f.name in names and f.name in data:
            kwargs[f.name] = decode(hints.get(f.name, Any), data[f.name])
    return cls(**kwargs)


# --- the journal -------------------------------------------------------------------------------


@dataclasses.dataclass
class _Kind:
    cls: type
    records: dict[str, Any]


class Journal:
    """The journal of one data directory. Usage:

        journal = Journal(data_dir)              # takes the directory's lock
        uploads = journal.collection(Upload)     # every kind, before load()
        journal.load()                           # replays the file into the collections
        journal.add(upload)                      # a new record; its changes are journaled
        with journal.batch(): …                  # several changes as one line (all or none)
        journal.close()
    """

    def __init__(self, data_dir: Path, compact_bytes: int = DEFAULT_COMPACT_BYTES) -> None:
        self.dir = Path(data_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / JOURNAL_NAME
        self.compact_bytes = compact_bytes
        self.kinds: dict[str, _Kind] = {}
        self._lock_fd = self._take_lock()
        self._fd: int | None = None  # opened by load()
        self._size = 0
        self._size_after_compaction = 0
        self._pending: list[list[Any]] | None = None  # ops of the open batch
        self._depth = 0
        self.lines_replayed = 0
        self.lines_dropped = 0

    def _take_lock(self) -> int:
        """Two processes appending to one journal would interleave their histories. The lock
        goes away with the process, so a killed emulator never leaves the directory locked."""
        fd = os.open(self.dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DataDirInUse(f"{self.dir} is in use by another emulator") from None
        return fd

    def collection(self, cls: type[R]) -> dict[str, R]:
        kind = cls.KIND
        if not kind or kind in self.kinds:
            raise ValueError(f"{cls.__name__}: KIND missing or already registered")
        records: dict[str, R] = {}
        self.kinds[kind] = _Kind(cls, records)
        return records

    # --- start-up ------------------------------------------------------------------------

    def load(self) -> None:
        """Replay the journal into the collections, cut off a torn tail, open it for appends."""
        good_end = 0
        if self.path.exists():
            with open(self.path, "rb") as f:
                offset = 0
                for raw in f:
                    end = offset + len(raw)
                    offset = end
                    if not raw.endswith(b"\n"):
                        self.lines_dropped += 1  # torn: the process died in this write
                        break
                    try:
                        ops = json.loads(raw)
                        if not isinstance(ops, list):
                            raise ValueError("not a list of operations")
                        self._apply(ops)
                    except (ValueError, TypeError, KeyError, IndexError) as e:
                        self.lines_dropped += 1
                        log.warning("journal %s: line ending at byte %d skipped (%s)", self.path, end, e)
                    self.lines_replayed += 1
                    good_end = end
            if good_end < self.path.stat().st_size:
                with open(self.path, "r+b") as f:
                    f.truncate(good_end)
        for kind in self.kinds.values():
            for record in kind.records.values():
                self._bind(record)
        self._open()
        self._size_after_compaction = min(self._size, self.compact_bytes)
        if self._size > self.compact_bytes:
            self.compact()

    def _apply(self, ops: list[Any]) -> None:
        for op in ops:
            verb, kind_name, record_id = op[0], op[1], op[2]
            kind = self.kinds.get(kind_name)
            if kind is None:
                continue  # a kind this emulator no longer has
            if verb == "put":
                kind.records[record_id] = from_json(kind.cls, op[3])
                continue
            if verb == "del":
                kind.records.pop(record_id, None)
                continue
            record = kind.records.get(record_id)
            if record is None:
                continue
            hints = _hints(kind.cls)
            names = persisted_fields(kind.cls)
            if verb == "set":
                for name, value in op[3].items():
                    if name in names:
                        setattr(record, name, decode(hints.get(name, Any), value))
            elif verb in ("item", "unset"):
                name, key = op[3], op[4]
                if name not in names:
                    continue
                hint = hints.get(name, Any)
                args = typing.get_args(hint) or (Any, Any)
                container = getattr(record, name)
                if verb == "item":
                    container[decode_key(args[0], key)] = decode(args[1], op[5])
                else:
                    container.pop(decode_key(args[0], key), None)
            else:
                raise ValueError(f"unknown operation {verb!r}")

    def _open(self) -> None:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._size = os.fstat(self._fd).st_size

    def _bind(self, record: Persistent) -> None:
        object.__setattr__(record, "_journal", self)

    # --- changes -------------------------------------------------------------------------

    def add(self, record: Persistent) -> None:
        """Keep a new record (or replace the one with its id) and journal its changes from now on."""
        kind = self.kinds[record.KIND]
        kind.records[record.id] = record  # type: ignore[attr-defined]
        self._bind(record)
        self._emit(["put", record.KIND, record.id, encode(record)])  # type: ignore[attr-defined]

    def remove(self, record: Persistent) -> None:
        self.kinds[record.KIND].records.pop(record.id, None)  # type: ignore[attr-defined]
        object.__setattr__(record, "_journal", None)
        self._emit(["del", record.KIND, record.id])  # type: ignore[attr-defined]

    def field_changed(self, record: Persistent, name: str) -> None:
        self._emit(["set", record.KIND, record.id, {name: encode(getattr(record, name))}])  # type: ignore[attr-defined]

    def item_changed(self, record: Persistent, name: str, key: Any, value: Any) -> None:
        self._emit(["item", record.KIND, record.id, name, _encode_key(key), encode(value)])  # type: ignore[attr-defined]

    def item_removed(self, record: Persistent, name: str, key: Any) -> None:
        self._emit(["unset", record.KIND, record.id, name, _encode_key(key)])  # type: ignore[attr-defined]

    @contextmanager
    def batch(self) -> Iterator[None]:
        """The changes made inside go out as one line: after a crash, all of them or none."""
        if self._pending is None:
            self._pending = []
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                ops, self._pending = self._pending, None
                if ops:
                    self._write(ops)

    def _emit(self, op: list[Any]) -> None:
        if self._pending is not None:
            self._pending.append(op)
        else:
            self._write([op])

    def _write(self, ops: list[list[Any]]) -> None:
        if self._fd is None:
            # Only after close(): a request cancelled while the emulator stops. Its answer
            # is never sent, so forgetting its change is what a crash would do too.
            log.warning("journal closed: %d change(s) not recorded", len(ops))
            return
        line = json.dumps(ops, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
        # One write(2) per line on an O_APPEND descriptor: once it returns, the line is the
        # kernel's and outlives this process.
        written = os.write(self._fd, line)
        while written < len(line):  # regular files take it all at once, but be exact
            written += os.write(self._fd, line[written:])
        self._size += len(line)
        if self._size > max(self.compact_bytes, 2 * self._size_after_compaction):
            self.compact()

    # --- compaction and stop -------------------------------------------------------------

    def compact(self) -> None:
        """Rewrite the journal as one "put" per live record (temp file, fsync, rename)."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            with os.fdopen(fd, "wb", buffering=1 << 20) as f:
                for kind_name, kind in self.kinds.items():
                    for record_id, record in kind.records.items():
                        f.write(json.dumps([["put", kind_name, record_id, encode(record)]],
                                           separators=(",", ":"), ensure_ascii=False).encode() + b"\n")
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, self.path)
        self._fsync_dir()
        if self._fd is not None:
            os.close(self._fd)
        self._open()
        self._size_after_compaction = self._size

    def _fsync_dir(self) -> None:
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def sync(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
