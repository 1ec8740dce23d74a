"""Property-based contract test: every operation of the live schema, with an agent key;
no 5xx, and responses conform to the schema."""

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from cxdesk.wsgi import application

schema = schemathesis.openapi.from_wsgi("/api/v1/schema/", application)


@pytest.fixture
def _keep_test_connection():
    """The WSGI handler closes DB connections after each request; Django's test client
    avoids that, and so must calls made through the WSGI app inside a test transaction."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def seeded(agent_key, email_inbox, _keep_test_connection):
    from channels_app.services import ingest
    from tests.channels_app.factories import email_inbound

    ingest(email_inbound(email_inbox, address="st@example.com"))
    return agent_key[1]


@schema.parametrize()
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@pytest.mark.django_db
def test_api_conforms_to_its_schema(case, seeded):
    case.call_and_validate(
        headers={"Authorization": f"Bearer {seeded}"},
        checks=[not_a_server_error, response_schema_conformance, status_code_conformance],
    )
