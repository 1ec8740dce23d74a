"""Domain events other apps subscribe to (outgoing webhooks, metrics). Sent by the
services inside their transaction; receivers schedule their work on commit."""

from django.dispatch import Signal

customer_merged = Signal()  # sender=Customer, merge=CustomerMerge
