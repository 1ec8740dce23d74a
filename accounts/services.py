"""Writes for staff identity: roles, two-factor enrolment, recovery codes."""

from __future__ import annotations

from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from cxdesk.errors import ApplicationError
from tickets.models import Team

from . import twofactor
from .models import RecoveryCode, TotpDevice
from .roles import ROLES, forget_role, is_admin


@transaction.atomic
def role_set(*, user, role: str, by=None) -> None:
    """Give `user` exactly one role group. Emits `m2m_changed` on `User.groups.through`
    (remove then add), which is how listeners (the audit log) see role changes; `by` is
    passed to them through `accounts.signals.role_changed` as well."""
    from .signals import role_changed

    if role not in ROLES:
        raise ApplicationError(f"unknown role {role!r}", code="invalid_role")
    old = sorted(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
    if old == [role]:
        return
    user.groups.remove(*Group.objects.filter(name__in=ROLES).exclude(name=role))
    user.groups.add(Group.objects.get_or_create(name=role)[0])
    forget_role(user)
    old_role = old[-1] if len(old) == 1 else (",".join(old) or None)
    transaction.on_commit(lambda: role_changed.send(sender=user.__class__, user=user, old=old_role, new=role, by=by))


@transaction.atomic
def staff_access_set(*, user, role: str, team_ids: list[int], by) -> None:
    """An admin sets a staff user's role and teams. Team changes go through
    `Team.members.add/remove` (listeners see `m2m_changed` with the team as instance)."""
    if not is_admin(by):
        raise ApplicationError(_("only admins change roles and teams"), code="forbidden", status=403)
    if user.pk == by.pk and role != "admin" and not user.is_superuser:
        raise ApplicationError(_("you cannot take away your own admin role"), code="self_demotion")
    wanted = set(Team.objects.filter(pk__in=team_ids).values_list("pk", flat=True))
    if len(wanted) != len(set(team_ids)):
        raise ApplicationError(_("no such team"), code="invalid_team", fields={"teams": ["unknown team"]})
    role_set(user=user, role=role, by=by)
    current = set(user.teams.values_list("pk", flat=True))
    for team in Team.objects.filter(pk__in=wanted - current):
        team.members.add(user)
    for team in Team.objects.filter(pk__in=current - wanted):
        team.members.remove(user)


@transaction.atomic
def totp_enrol_start(*, user) -> TotpDevice:
    """A fresh, unconfirmed secret (replacing an unconfirmed one); a confirmed device
    must be removed first."""
    device = TotpDevice.objects.select_for_update().filter(user=user).first()
    if device is not None and device.confirmed:
        raise ApplicationError(_("two-factor is already set up"), code="already_enrolled")
    if device is None:
        return TotpDevice.objects.create(user=user, secret=twofactor.new_secret())
    device.secret = twofactor.new_secret()
    device.last_step = 0
    device.save(update_fields=["secret", "last_step"])
    return device


@transaction.atomic
def totp_enrol_confirm(*, user, code: str) -> list[str]:
    """Confirm the pending device with a code from the app; returns the new recovery codes
    (shown once — only their hashes are stored)."""
    device = TotpDevice.objects.select_for_update().filter(user=user, confirmed=False).first()
    if device is None:
        raise ApplicationError(_("start the set-up again"), code="no_pending_device")
    step = twofactor.totp_match(secret=device.secret, code=code, last_step=device.last_step)
    if step is None:
        raise ApplicationError(
            _("that code is not right — check the time on your phone and try again"), code="bad_code"
        )
    device.confirmed = True
    device.confirmed_at = timezone.now()
    device.last_step = step
    device.save(update_fields=["confirmed", "confirmed_at", "last_step"])
    return recovery_codes_regenerate(user=user)


@transaction.atomic
def recovery_codes_regenerate(*, user) -> list[str]:
    codes = twofactor.new_recovery_codes()
    RecoveryCode.objects.filter(user=user).delete()
    RecoveryCode.objects.bulk_create(RecoveryCode(user=user, code_hash=twofactor.recovery_hash(c)) for c in codes)
    return codes


@transaction.atomic
def second_factor_verify(*, user, code: str) -> str | None:
    """Check a TOTP code or an unused recovery code; returns "totp" / "recovery" or None.
    The device row is locked so one code cannot be used twice in parallel."""
    device = TotpDevice.objects.select_for_update().filter(user=user, confirmed=True).first()
    if device is None:
        return None
    step = twofactor.totp_match(secret=device.secret, code=code, last_step=device.last_step)
    if step is not None:
        device.last_step = step
        device.save(update_fields=["last_step"])
        return "totp"
    used = RecoveryCode.objects.filter(user=user, code_hash=twofactor.recovery_hash(code), used_at=None).update(
        used_at=timezone.now()
    )
    return "recovery" if used else None


@transaction.atomic
def totp_remove(*, user) -> None:
    TotpDevice.objects.filter(user=user).delete()
    RecoveryCode.objects.filter(user=user).delete()


def staff_language_set(*, user, language: str) -> str:
    """The agent's desk language ("" = the browser's); a language the desk does not speak
    is refused."""
    from cxdesk.i18n import clean_language

    from .models import StaffProfile

    code = clean_language(language) if language else ""
    if language and not code:
        raise ApplicationError(_("That language is not available."), code="invalid_language")
    StaffProfile.objects.update_or_create(user=user, defaults={"language": code})
    return code
