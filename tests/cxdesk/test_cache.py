"""cxdesk.cache.RedisCache: Django's Redis cache with one client object per pool."""

import os

import pytest
from django.core.cache import caches
from django.test import override_settings


@pytest.fixture
def redis_cache():
    url = os.environ.get("REDIS_URL")
    if not url:
        assert os.environ.get("CI") != "true", "CI runs the suite with REDIS_URL set"
        pytest.skip("no REDIS_URL: the embedded settings use the local-memory cache")
    with override_settings(CACHES={"default": {"BACKEND": "cxdesk.cache.RedisCache", "LOCATION": url}}):
        cache = caches["default"]
        yield cache
        cache.delete_many(["cxdesk-test:a", "cxdesk-test:b"])


def test_the_client_is_built_once_and_every_call_reaches_redis(redis_cache):
    client = redis_cache._cache.get_client()
    assert redis_cache._cache.get_client(write=True) is client, "one client for the pool"
    assert redis_cache.add("cxdesk-test:a", 1, 30) is True
    assert redis_cache.add("cxdesk-test:a", 2, 30) is False, "NX: the key stands"
    redis_cache.set("cxdesk-test:b", {"x": [1, 2]}, 30)
    assert redis_cache.get_many(["cxdesk-test:a", "cxdesk-test:b"]) == {
        "cxdesk-test:a": 1,
        "cxdesk-test:b": {"x": [1, 2]},
    }
    assert client.ttl(redis_cache.make_key("cxdesk-test:a")) > 0, "the same Redis the calls went to"


def test_count_is_one_round_trip_through_djangos_cache_proxy(redis_cache, monkeypatch):
    """The callers pass `django.core.cache.cache`, a proxy that is not a RedisCache itself:
    `count` must still take the one-pipeline path, not `add` then `incr` (EXISTS, INCRBY)."""
    from django.core.cache import cache as proxy
    from redis.client import Pipeline, Redis

    from cxdesk.cache import count

    sent: list[str] = []
    real_execute, real_pipeline_execute = Redis.execute_command, Pipeline.execute

    def execute_command(self, *args, **options):
        sent.append(str(args[0]))
        return real_execute(self, *args, **options)

    def pipeline_execute(self, *args, **options):
        sent.append("PIPELINE " + " ".join(str(c[0][0]) for c in self.command_stack))
        return real_pipeline_execute(self, *args, **options)

    monkeypatch.setattr(Redis, "execute_command", execute_command)
    monkeypatch.setattr(Pipeline, "execute", pipeline_execute)
    assert count(proxy, "cxdesk-test:a", 30, start=10) == 11
    assert count(proxy, "cxdesk-test:a", 30, start=10) == 12
    assert sent == ["PIPELINE SET INCRBY", "PIPELINE SET INCRBY"], sent
