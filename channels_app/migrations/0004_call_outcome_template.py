"""A ready "Log call outcome" template in the desk's canned responses (added as an internal note)."""

from django.db import migrations

SHORTCUT = "call-outcome"
BODY = "Call outcome: \nAgreed next step: \nCall back by (date/time): \n"


def add(apps, schema_editor):
    CannedResponse = apps.get_model("tickets", "CannedResponse")
    if not CannedResponse.objects.filter(shortcut=SHORTCUT).exists():
        CannedResponse.objects.create(title="Log call outcome", shortcut=SHORTCUT, body=BODY)


def remove(apps, schema_editor):
    apps.get_model("tickets", "CannedResponse").objects.filter(shortcut=SHORTCUT, body=BODY).delete()


class Migration(migrations.Migration):
    dependencies = [("channels_app", "0003_voice_calls"), ("tickets", "0008_voice_channel_call_events")]
    operations = [migrations.RunPython(add, remove)]
