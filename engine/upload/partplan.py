"""How a file of a given size is cut into Notion parts (NOTION_API.md "Limits", DESIGN.md "Part plan")."""
from __future__ import annotations

from dataclasses import dataclass

MIB = 2**20
# Notion documents single_part as "up to 20 MB" (reference/send-a-file-upload): decimal
# megabytes, so 20,000,000 bytes. Between that and 20 MiB a file goes as multi_part, where one
# part of up to 20 MiB is allowed.
SINGLE_PART_MAX_BYTES = 20_000_000
MIN_PART_BYTES = 5 * MIB
MAX_PART_BYTES = 20 * MIB
MAX_PARTS = 1000


class PlanError(ValueError):
    """The size cannot be sent to Notion under its part rules."""


@dataclass(frozen=True)
class PartPlan:
    size: int
    part_size: int
    number_of_parts: int

    @property
    def mode(self) -> str:
        return "multi_part" if self.number_of_parts > 1 or self.size > SINGLE_PART_MAX_BYTES else "single_part"

    @property
    def is_multipart(self) -> bool:
        return self.mode == "multi_part"

    def part_start(self, number: int) -> int:
        return (number - 1) * self.part_size

    def part_length(self, number: int) -> int:
        return min(self.part_size, self.size - self.part_start(number))

    def part_end(self, number: int) -> int:
        return self.part_start(number) + self.part_length(number)

    def part_at(self, offset: int) -> int:
        """The part number holding byte `offset` (0-based)."""
        return offset // self.part_size + 1

    def durable_offset(self, durable_parts: set[int] | frozenset[int]) -> int:
        """End of the longest run of parts 1, 2, … that are all durable (DESIGN.md invariant 2)."""
        n = 0
        while n + 1 in durable_parts:
            n += 1
        return self.part_end(n) if n else 0


def plan_parts(size: int, preferred_part_bytes: int) -> PartPlan:
    if size <= 0:
        raise PlanError("a file must hold at least one byte")
    if size <= SINGLE_PART_MAX_BYTES:
        return PartPlan(size=size, part_size=size, number_of_parts=1)
    part_size = max(preferred_part_bytes, -(-size // MAX_PARTS))
    part_size = min(max(part_size, MIN_PART_BYTES), MAX_PART_BYTES)
    count = -(-size // part_size)
    if count > MAX_PARTS:
        raise PlanError(f"{size} bytes need {count} parts of {part_size} bytes; Notion allows {MAX_PARTS}")
    return PartPlan(size=size, part_size=part_size, number_of_parts=count)
