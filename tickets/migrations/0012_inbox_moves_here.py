import datetime
import django.db.models.deletion
from django.db import migrations, models


def content_type_follows(apps, schema_editor):
    """Permissions and audit entries that name the inbox model keep pointing at it."""
    ContentType = apps.get_model("contenttypes", "ContentType")
    if not ContentType.objects.filter(app_label="tickets", model="inbox").exists():
        ContentType.objects.filter(app_label="channels_app", model="inbox").update(app_label="tickets")


class Migration(migrations.Migration):
    dependencies = [
        ("channels_app", "0005_chatvisitor_chatinvitation"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("tickets", "0011_choices"),
    ]

    operations = [
        # The table stays where it is: only which app owns the model moves (tickets now).
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="Inbox",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        (
                            "kind",
                            models.CharField(
                                help_text="Adapter kind: email, twilio, whatsapp, messenger, telegram.", max_length=32
                            ),
                        ),
                        ("name", models.CharField(max_length=100, unique=True)),
                        ("config", models.JSONField(blank=True, default=dict)),
                        ("secrets", models.JSONField(blank=True, default=dict)),
                        (
                            "transport",
                            models.CharField(
                                choices=[
                                    ("live", "Live (provider API / SMTP)"),
                                    ("file", "Development: write to var/outbox/"),
                                ],
                                default="live",
                                max_length=8,
                            ),
                        ),
                        (
                            "continuity_window",
                            models.DurationField(
                                default=datetime.timedelta(days=7),
                                help_text="A message from a customer with an open ticket updated within this window joins that ticket.",
                            ),
                        ),
                        ("is_active", models.BooleanField(default=True)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        (
                            "default_team",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="+",
                                to="tickets.team",
                            ),
                        ),
                    ],
                    options={
                        "verbose_name_plural": "inboxes",
                        "db_table": "channels_app_inbox",
                        "ordering": ["name"],
                    },
                ),
                migrations.AlterField(
                    model_name="message",
                    name="inbox",
                    field=models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="messages",
                        to="tickets.inbox",
                    ),
                ),
                migrations.AlterField(
                    model_name="ticket",
                    name="inbox",
                    field=models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="tickets",
                        to="tickets.inbox",
                    ),
                ),
            ],
        ),
        migrations.RunPython(content_type_follows, migrations.RunPython.noop),
    ]
