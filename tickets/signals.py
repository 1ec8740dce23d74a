"""Domain events other apps subscribe to (outgoing webhooks, routing, SLAs). Sent
by services inside their transaction; receivers schedule work with on_commit."""

from django.dispatch import Signal

ticket_created = Signal()  # sender=Ticket, ticket, actor
ticket_updated = Signal()  # sender=Ticket, ticket, actor, changes: dict
message_created = Signal()  # sender=Message, message, created_ticket: bool
message_status_changed = Signal()  # sender=Message, message, old: str
agent_contacted = Signal()  # sender=Ticket, ticket, agent, at: an agent reached the customer outside a reply (a call)
