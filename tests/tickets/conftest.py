# The real clamd fixtures (tests/tickets/clamd.py) for the scanning tests.
from tests.tickets.clamd import clamd, clamd_settings  # noqa: F401
