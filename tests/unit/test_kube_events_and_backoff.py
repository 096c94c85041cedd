"""The operator's event recorder and retry policy: pure, driven by a fake clock."""

from __future__ import annotations

import itertools
import random

from hypothesis import given
from hypothesis import strategies as st

from jwt_trust.kube.backoff import Backoff
from jwt_trust.kube.events import EventRecorder

HOUR = 3600.0


def test_the_first_occurrence_posts_and_repeats_within_the_ttl_are_only_counted() -> None:
    events = EventRecorder(ttl=HOUR)
    assert events.record("uid", "WriteFailed", "ns/a: forbidden", 0.0) == 1
    assert [events.record("uid", "WriteFailed", "ns/a: forbidden", t) for t in (5.0, 10.0, 3599.0)] == [
        None,
        None,
        None,
    ]
    # The first repeat after the TTL posts again, standing for every occurrence since the last post.
    assert events.record("uid", "WriteFailed", "ns/a: forbidden", HOUR) == 4


def test_messages_with_the_same_reason_do_not_evict_each_other() -> None:
    # A policy reports a summary and a per-namespace message under one reason on every retry.
    events = EventRecorder(ttl=HOUR)
    summary, detail = "1 of 3 namespaces not synced; first: ns/a", "ns/a: forbidden"
    posted = [
        events.record("uid", "WriteFailed", message, t)
        for t in range(0, 600, 5)
        for message in (summary, detail)
    ]
    assert posted.count(1) == 2
    assert sum(1 for p in posted if p is not None) == 2


def test_objects_and_reasons_are_kept_apart_and_forget_starts_a_new_episode() -> None:
    events = EventRecorder(ttl=HOUR)
    assert events.record("a", "R", "m", 0.0) == 1
    assert events.record("b", "R", "m", 1.0) == 1
    assert events.record("a", "S", "m", 2.0) == 1
    assert events.record("a", "R", "m", 3.0) is None
    events.forget("a", "R")
    assert events.record("a", "R", "m", 4.0) == 1
    assert events.record("a", "S", "m", 5.0) is None
    events.forget("a")
    assert events.record("a", "S", "m", 6.0) == 1
    assert events.record("b", "R", "m", 7.0) is None


def test_memory_is_bounded_and_the_oldest_entries_go_first() -> None:
    events = EventRecorder(ttl=HOUR, max_entries=3)
    for i in range(5):
        assert events.record(f"uid{i}", "R", "m", float(i)) == 1
    assert len(events) == 3
    assert events.record("uid4", "R", "m", 10.0) is None
    assert events.record("uid0", "R", "m", 11.0) == 1


@given(gaps=st.lists(st.floats(min_value=0.0, max_value=2 * HOUR, allow_nan=False), min_size=1, max_size=200))
def test_at_most_one_event_per_ttl_and_every_occurrence_counted(gaps: list[float]) -> None:
    events = EventRecorder(ttl=HOUR)
    now, posts = 0.0, []
    for occurrences, gap in enumerate(gaps, start=1):
        now += gap
        count = events.record("uid", "WriteFailed", "refused", now)
        if count is not None:
            posts.append((now, count, occurrences))
    times = [t for t, _, _ in posts]
    assert all(later - earlier >= HOUR for earlier, later in itertools.pairwise(times))
    # The counts posted add up to the occurrences up to the last post: none is silently dropped.
    assert sum(c for _, c, _ in posts) == posts[-1][2]


def test_backoff_doubles_per_failure_up_to_the_cap_and_resets_on_success() -> None:
    backoff = Backoff(base=1.0, cap=60.0, jitter=0.0)
    delays = [backoff.failed("policy/a", 100.0) - 100.0 for _ in range(9)]
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert backoff.failures("policy/a") == 9
    assert backoff.failed("policy/b", 0.0) == 1.0
    backoff.succeeded("policy/a")
    assert backoff.failures("policy/a") == 0
    assert backoff.failed("policy/a", 0.0) == 1.0


def test_backoff_jitter_only_shortens_and_stays_within_its_fraction() -> None:
    backoff = Backoff(base=10.0, cap=10.0, jitter=0.1, rng=random.Random(7))
    waits = {backoff.failed("k", 0.0) for _ in range(200)}
    assert min(waits) >= 9.0
    assert max(waits) <= 10.0
    assert len(waits) > 100  # not in lockstep


def test_backoff_survives_a_very_long_failure_streak() -> None:
    backoff = Backoff(base=1.0, cap=300.0, jitter=0.0)
    for _ in range(2000):
        retry = backoff.failed("k", 0.0)
    assert retry == 300.0
