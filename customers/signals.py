"""Domain events other apps subscribe to (outgoing webhooks, metrics). Sent by the
services inside their transaction; receivers schedule their work on commit."""

from django.dispatch import Signal

customer_merged = Signal()  # sender=Customer, merge=CustomerMerge

# GDPR: apps that keep personal data of their own join the export and the erasure.
# customer_exporting(sender=Customer, customer_ids=[…], ticket_ids=[…], message_ids=[…]) →
#   each receiver returns {"section name": JSON-able data} to add to the export.
customer_exporting = Signal()
# customer_erasing(sender=Customer, customer_ids, ticket_ids, message_ids), inside the erase
#   transaction → each receiver removes what it holds and returns {"what": count}.
customer_erasing = Signal()
