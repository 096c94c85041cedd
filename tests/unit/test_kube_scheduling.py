"""Tests of the write scheduler (``jwt_trust.kube.scheduling``): fair turns between policies, and a
concurrency limit that follows the API server, with a fake clock."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from jwt_trust.kube.scheduling import SLOW_SECONDS, Round, WriteScheduler, adapt


def test_the_limit_halves_after_a_throttled_round_and_grows_by_one_otherwise() -> None:
    assert adapt(16, 16, Round((0.01,) * 16, throttled=True), 0.01) == 8
    assert adapt(1, 16, Round((0.01,), throttled=True), 0.01) == 1
    assert adapt(8, 16, Round((0.01,) * 8, throttled=False), 0.01) == 9
    assert adapt(16, 16, Round((0.01,) * 16, throttled=False), 0.01) == 16


def test_the_limit_shrinks_when_the_api_server_queues() -> None:
    slow = Round((SLOW_SECONDS * 2,) * 16, throttled=False)
    assert adapt(16, 16, slow, fastest=0.02) == 12
    # Slow, but not slower than it has always been: a slow API server is not a queueing one.
    assert adapt(16, 16, slow, fastest=SLOW_SECONDS) == 16
    # Four times slower, but fast in absolute terms: nothing to do.
    assert adapt(16, 16, Round((0.2,) * 16, throttled=False), fastest=0.01) == 16


@settings(max_examples=300, deadline=None)
@given(
    limit=st.integers(1, 64),
    cap=st.integers(1, 64),
    latencies=st.lists(st.floats(0, 10), max_size=20),
    throttled=st.booleans(),
    fastest=st.none() | st.floats(0.001, 10),
)
def test_the_limit_stays_between_one_and_the_cap(
    limit: int, cap: int, latencies: list[float], throttled: bool, fastest: float | None
) -> None:
    limit = min(limit, cap)
    after = adapt(limit, cap, Round(tuple(latencies), throttled), fastest)
    assert 1 <= after <= cap
    if throttled:
        assert after <= max(1, limit // 2)


def test_a_small_policy_is_not_held_back_by_a_big_one() -> None:
    async def scenario() -> list[str]:
        scheduler = WriteScheduler(cap=1)
        order: list[str] = []
        release = asyncio.Event()

        async def write(key: str) -> None:
            async with scheduler.slot(key):
                order.append(key)
                if len(order) == 1:
                    await release.wait()
                await asyncio.sleep(0)

        big = [asyncio.create_task(write("big")) for _ in range(50)]
        await asyncio.sleep(0)
        small = [asyncio.create_task(write("small")) for _ in range(2)]
        await asyncio.sleep(0)
        release.set()
        await asyncio.gather(*big, *small)
        return order

    order = asyncio.run(scenario())
    assert len(order) == 52
    # After the write in flight, turns alternate while both wait: small's two writes come within
    # the first four, not after fifty.
    assert [i for i, key in enumerate(order) if key == "small"] == [2, 4]


def test_no_more_writes_run_at_once_than_the_limit_and_a_cancelled_waiter_gives_its_turn_on() -> None:
    async def scenario() -> int:
        scheduler = WriteScheduler(cap=3)
        running = peak = 0

        async def write(key: str) -> None:
            nonlocal running, peak
            async with scheduler.slot(key):
                running += 1
                peak = max(peak, running)
                await asyncio.sleep(0.001)
                running -= 1

        tasks = [asyncio.create_task(write(f"p{i % 4}")) for i in range(40)]
        await asyncio.sleep(0)
        tasks[-1].cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert scheduler.waiting == 0
        return peak

    assert asyncio.run(scenario()) == 3


def test_a_throttled_round_lowers_the_limit_of_the_scheduler() -> None:
    async def scenario() -> int:
        now = [0.0]
        scheduler = WriteScheduler(cap=4, clock=lambda: now[0])
        for _ in range(4):
            async with scheduler.slot("p"):
                scheduler.throttled()
                now[0] += 0.01
        return scheduler.limit

    assert asyncio.run(scenario()) == 2
