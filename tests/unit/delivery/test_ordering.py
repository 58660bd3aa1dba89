"""One user's jobs go out strictly one after another; different users go out together."""

from dataclasses import dataclass

from connector.delivery.ordering import KeyedScheduler


@dataclass(eq=False)
class J:
    order_key: str
    n: int


def test_jobs_of_one_key_are_released_in_order_one_at_a_time() -> None:
    s: KeyedScheduler[J] = KeyedScheduler()
    a1, a2, b1, a3 = J("a", 1), J("a", 2), J("b", 1), J("a", 3)
    for job in (a1, a2, b1, a3):
        s.add(job)
    assert s.take(10) == [a1, b1]  # a2 waits for a1
    assert s.take(10) == []
    s.done(a1)
    assert s.take(10) == [a2]
    s.done(a2)
    s.done(b1)
    assert s.take(10) == [a3]
    s.done(a3)
    assert len(s) == 0


def test_take_respects_the_limit() -> None:
    s: KeyedScheduler[J] = KeyedScheduler()
    for n in range(5):
        s.add(J(f"u{n}", n))
    assert [j.n for j in s.take(3)] == [0, 1, 2]
    assert [j.n for j in s.take(3)] == [3, 4]


def test_remove_where_forgets_keys_and_returns_waiting_jobs() -> None:
    s: KeyedScheduler[J] = KeyedScheduler()
    a1, a2, b1 = J("a", 1), J("a", 2), J("b", 1)
    for job in (a1, a2, b1):
        s.add(job)
    assert s.take(1) == [a1]
    removed = s.remove_where(lambda key: key == "a")
    assert removed == [a2]
    s.add(J("a", 9))  # the key is free again: a new owner's job is not blocked by a1
    assert [j.n for j in s.take(10)] == [1, 9]
