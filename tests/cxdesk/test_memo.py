"""cxdesk.memo: an answer asked once per scope, every time outside one."""

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
