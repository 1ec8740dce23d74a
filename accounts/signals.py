"""Signals of staff identity, for listeners such as the audit log.

- `role_changed(sender=User class, user, old, new, by)`: sent on commit by
  `accounts.services.role_set`. Role changes made elsewhere (the Django admin's group
  field) are still visible as `m2m_changed` on `User.groups.through`.
"""

from django.dispatch import Signal

role_changed = Signal()
