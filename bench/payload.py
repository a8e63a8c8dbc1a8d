"""The bytes every benchmark subject receives: one generated file per size, and its part files."""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from engine.upload.partplan import PartPlan, plan_parts

MiB = 2**20
GiB = 2**30

# The relay's default PART_SIZE_MB; the bare libcurl baseline cuts the file with the relay's own
# plan_parts so that the floor is the same work.
DEFAULT_PART_BYTES = 20 * MiB

# Random bytes defeat any compression on the path; a 1 MiB block keeps generation fast.
_BLOCK_BYTES = MiB

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMG]?)(?:i?B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 2**10, "M": MiB, "G": GiB}


@dataclass(frozen=True)
class Payload:
    label: str  # as the user wrote it, e.g. "100M"
    path: Path
    size_bytes: int
    sha256: str
    plan: PartPlan


def parse_size(text: str) -> int:
    """'100M' → 104857600. Units are binary (K = KiB, M = MiB, G = GiB)."""
    m = _SIZE_RE.match(text)
    if not m:
        raise ValueError(f"not a size: {text!r} (use e.g. 8M, 100M, 1G)")
    size = int(float(m.group(1)) * _UNITS[m.group(2).upper()])
    if size <= 0:
        raise ValueError(f"size must be positive: {text!r}")
    return size


def make_payload(directory: Path, label: str, size_bytes: int) -> Payload:
    """Write size_bytes of incompressible data and hash it on the way."""
    path = directory / f"payload-{label}.bin"
    block = bytearray(os.urandom(_BLOCK_BYTES))
    digest = hashlib.sha256()
    written = 0
    counter = 0
    with open(path, "wb") as out:
        while written < size_bytes:
            # A counter in every block keeps blocks distinct, so a lost or repeated block changes
            # the sha256.
            block[:8] = counter.to_bytes(8, "little")
            chunk = memoryview(block)[: min(_BLOCK_BYTES, size_bytes - written)]
            out.write(chunk)
            digest.update(chunk)
            written += len(chunk)
            counter += 1
    return Payload(label, path, size_bytes, digest.hexdigest(), plan_parts(size_bytes, DEFAULT_PART_BYTES))


def split_parts(payload: Payload, directory: Path) -> list[Path]:
    """Cut the payload into the plan's part files (outside any measurement)."""
    directory.mkdir(parents=True, exist_ok=True)
    parts: list[Path] = []
    plan = payload.plan
    with open(payload.path, "rb") as src:
        for number in range(1, plan.number_of_parts + 1):
            part = directory / f"part-{number:04d}"
            with open(part, "wb") as dst:
                offset = plan.part_start(number)
                # copy_file_range copies inside the kernel: no 1 GiB pass through Python.
                remaining = plan.part_length(number)
                while remaining:
                    n = os.copy_file_range(src.fileno(), dst.fileno(), remaining, offset)
                    if n == 0:
                        raise OSError(f"short copy for {part}")
                    offset += n
                    remaining -= n
            parts.append(part)
    return parts


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 * MiB):
            digest.update(chunk)
    return digest.hexdigest()
