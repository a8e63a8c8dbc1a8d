from __future__ import annotations

import pytest

from engine.upload.partplan import MAX_PARTS, MIB, PlanError, plan_parts

pytestmark = pytest.mark.inprocess


@pytest.mark.parametrize("size", [1, 5 * MIB - 1, 5 * MIB, 20_000_000])
def test_up_to_20_mb_is_one_single_part_send(size):
    plan = plan_parts(size, 10 * MIB)
    assert plan.mode == "single_part" and plan.number_of_parts == 1 and plan.part_length(1) == size


@pytest.mark.parametrize("preferred_mib", [5, 10, 20])  # PART_SIZE_MB's range; 20 is the default
@pytest.mark.parametrize("size", [20_000_001, 20 * MIB, 20 * MIB + 1, 64 * MIB + 3, 300 * MIB, 5 * 2**30, 10_000 * MIB + 7])
def test_multi_part_obeys_notions_rules(size, preferred_mib):
    plan = plan_parts(size, preferred_mib * MIB)
    assert plan.mode == "multi_part"
    assert 5 * MIB <= plan.part_size <= 20 * MIB
    assert plan.number_of_parts <= MAX_PARTS
    assert sum(plan.part_length(n) for n in range(1, plan.number_of_parts + 1)) == size
    for n in range(1, plan.number_of_parts):
        assert plan.part_length(n) == plan.part_size
    assert 1 <= plan.part_length(plan.number_of_parts) <= plan.part_size


def test_parts_grow_to_stay_under_1000():
    plan = plan_parts(15_000 * MIB, 10 * MIB)
    assert plan.part_size == 15 * MIB and plan.number_of_parts == 1000


def test_with_the_default_20_mib_parts():
    # Just past single_part's 20,000,000 bytes and up to 20 MiB: multi_part, one part.
    for size in (20_000_001, 20 * MIB):
        plan = plan_parts(size, 20 * MIB)
        assert (plan.mode, plan.part_size, plan.number_of_parts) == ("multi_part", 20 * MIB, 1)
        assert plan.part_length(1) == size
    plan = plan_parts(45 * MIB, 20 * MIB)
    assert plan.number_of_parts == 3 and [plan.part_length(n) for n in (1, 2, 3)] == [20 * MIB, 20 * MIB, 5 * MIB]
    # 1000 parts of 20 MiB are the most Notion takes: the size floor never raises a 20 MiB part.
    assert plan_parts(20 * MIB * 1000, 20 * MIB).number_of_parts == 1000
    assert plan_parts(5 * 2**30, 20 * MIB).part_size == 20 * MIB


def test_too_big_or_empty_is_refused():
    with pytest.raises(PlanError):
        plan_parts(20 * MIB * 1000 + 1, 10 * MIB)
    with pytest.raises(PlanError):
        plan_parts(0, 10 * MIB)


def test_durable_offset_is_the_contiguous_run_from_part_one():
    plan = plan_parts(35 * MIB, 10 * MIB)
    assert plan.durable_offset(set()) == 0
    assert plan.durable_offset({2, 3}) == 0
    assert plan.durable_offset({1, 3}) == 10 * MIB
    assert plan.durable_offset({1, 2, 3, 4}) == 35 * MIB
