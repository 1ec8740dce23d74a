from django.core.management.base import BaseCommand, CommandError

from tickets.models import Attachment
from tickets.scanning import get_scanner
from tickets.tasks import scan_attachment


class Command(BaseCommand):
    help = (
        "scan_attachments [--status unscanned,error] [--limit N]: queue a virus scan of stored attachments "
        "(e.g. after turning CXDESK_SCANNER on, or to retry files that could not be scanned)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--status", default="unscanned,error", help="Comma-separated scan states to (re)scan.")
        parser.add_argument("--limit", type=int, default=0)

    def handle(self, *args, status, limit, **options):
        if get_scanner() is None:
            raise CommandError("no scanner configured (set CXDESK_SCANNER=clamd)")
        states = [s.strip() for s in status.split(",") if s.strip()]
        unknown = set(states) - set(Attachment.ScanStatus.values)
        if unknown:
            raise CommandError(f"unknown state(s) {sorted(unknown)}; use {Attachment.ScanStatus.values}")
        ids = list(
            Attachment.objects.filter(scan_status__in=states)
            .exclude(file="")
            .order_by("id")
            .values_list("pk", flat=True)
        )
        if limit:
            ids = ids[:limit]
        # Pending first, so downloads are held back until the verdict.
        Attachment.objects.filter(pk__in=ids).update(scan_status=Attachment.ScanStatus.PENDING)
        for pk in ids:
            scan_attachment.delay(pk)
        self.stdout.write(f"queued {len(ids)} attachment(s) for scanning")
