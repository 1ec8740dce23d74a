"""Work that was pending before the outbox existed (replies still queued or left sending,
webhook deliveries not yet delivered, media not yet fetched) becomes outbox rows, so the
sweeper finishes it after the upgrade instead of it waiting for ever."""

from django.db import migrations


def backfill(apps, schema_editor):
    OutboxTask = apps.get_model("outbox", "OutboxTask")
    Message = apps.get_model("tickets", "Message")
    Attachment = apps.get_model("tickets", "Attachment")
    WebhookDelivery = apps.get_model("integrations", "WebhookDelivery")
    rows = [
        OutboxTask(kind="send_message", object_id=pk)
        for pk in Message.objects.filter(direction="outbound", status__in=("queued", "sending")).values_list(
            "pk", flat=True
        )
    ]
    rows += [
        OutboxTask(kind="deliver_webhook", object_id=pk)
        for pk in WebhookDelivery.objects.filter(status__in=("pending", "retrying")).values_list("pk", flat=True)
    ]
    rows += [
        OutboxTask(kind="fetch_media", object_id=pk)
        for pk in Attachment.objects.filter(sha256="").exclude(source_url="").values_list("pk", flat=True)
    ]
    OutboxTask.objects.bulk_create(rows, batch_size=1000)


class Migration(migrations.Migration):
    dependencies = [
        ("outbox", "0001_initial"),
        ("tickets", "0006_mention"),
        ("integrations", "0001_initial"),
    ]

    operations = [migrations.RunPython(backfill, migrations.RunPython.noop)]
