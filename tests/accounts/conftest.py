import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def _fast_and_clean(settings):
    """A fast hasher (the throttle, not the hash, is under test) and no counters left over."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    cache.clear()
    yield
    cache.clear()
