"""cxdesk.memo: an answer asked once per scope, every time outside one; the configuration
kept by the process for a second, forgotten when this process writes it."""

import pytest

from cxdesk import memo
from cxdesk.memo import forget, memo_scope, memoized


def test_asked_once_in_a_scope_and_every_time_outside():
    calls = []

    def load():
        calls.append(1)
        return len(calls)

    assert memoized("k", load) == 1 and memoized("k", load) == 2  # no scope: always asked
    with memo_scope():
        assert memoized("k", load) == 3 and memoized("k", load) == 3
        with memo_scope():  # a nested scope shares the outer one
            assert memoized("k", load) == 3
        forget("k")
        assert memoized("k", load) == 4
    assert memoized("k", load) == 5  # the scope ended with the block


def test_a_scope_ends_even_when_its_block_raises():
    try:
        with memo_scope():
            memoized("x", lambda: "inside")
            raise RuntimeError
    except RuntimeError:
        pass
    assert memoized("x", lambda: "outside") == "outside"


# --- kept: the desk's configuration, kept by the process ---------------------------------


@pytest.fixture
def clock(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(memo.time, "monotonic", lambda: now[0])
    return now


def _default_team():
    from tickets.models import Team

    return memo.kept("test.default_team", lambda: Team.objects.filter(is_default=True).first())


@pytest.mark.django_db
def test_kept_is_asked_once_a_second_by_the_process(clock):
    calls = []

    def load():
        calls.append(1)
        return len(calls)

    assert memo.kept("k", load) == 1 and memo.kept("k", load) == 1
    clock[0] += memo.KEPT_SECONDS - 0.01
    assert memo.kept("k", load) == 1
    clock[0] += 0.02
    assert memo.kept("k", load) == 2, "asked again once its second is over"


@pytest.mark.django_db(transaction=True)
def test_a_committed_write_to_a_watched_table_is_seen_at_once(clock):
    """Team is watched (routing's default team): a save, and an `update()` that sends no
    signal, both make the process forget; a write elsewhere does not."""
    from customers.models import Customer
    from tickets.models import Team

    assert _default_team() is None
    front = Team.objects.create(name="Front", is_default=True)
    assert _default_team() == front
    Team.objects.filter(pk=front.pk).update(is_default=False)  # no signal: the SQL is what is watched
    assert _default_team() is None
    Team.objects.filter(pk=front.pk).update(is_default=True)
    kept = _default_team()
    Customer.objects.create(name="not configuration")
    assert _default_team() is kept, "an unwatched write keeps what is kept"


@pytest.mark.django_db(transaction=True)
def test_the_writing_transaction_keeps_nothing_of_what_it_may_roll_back(clock):
    from django.db import transaction

    from tickets.models import Team

    assert _default_team() is None  # kept: no default team
    seen = []
    try:
        with transaction.atomic():
            Team.objects.create(name="Front", is_default=True)
            seen += [_default_team(), _default_team()]
            raise RuntimeError("rolled back")
    except RuntimeError:
        pass
    assert all(team is not None for team in seen), "the writer reads its own view"
    assert _default_team() is None, "nothing of the rolled-back write was kept"
    with transaction.atomic():
        back = Team.objects.create(name="Back", is_default=True)
    assert _default_team() == back, "committed: seen at once"
    Team.objects.all().delete()
    assert _default_team() is None
