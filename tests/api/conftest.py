import pytest
from rest_framework.test import APIClient

from integrations.services import api_key_create
from tests.tickets.factories import AgentFactory


@pytest.fixture
def agent_key(db):
    agent = AgentFactory(username="api-agent")
    _, key = api_key_create(user=agent, name="test")
    return agent, key


@pytest.fixture
def api(agent_key):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {agent_key[1]}")
    client.agent = agent_key[0]
    return client
