import pytest
from channels_redis.utils import create_pool
from django.conf import settings


def test_the_redis_channel_layer_has_no_client_read_timeout():
    """redis-py 8 reads with a 5 s timeout by default; the layer blocks longer than that
    waiting for messages, so every idle websocket died after ~5 s (redis/redis-py#4091)."""
    if settings.CHANNEL_LAYERS["default"]["BACKEND"] != "channels_redis.core.RedisChannelLayer":
        pytest.fail("run with REDIS_URL set: this checks the Redis channel layer's settings")
    host = settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"][0]
    connection = create_pool(host).make_connection()
    assert connection.socket_timeout is None
