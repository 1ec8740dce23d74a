import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("channels_app", "0005_chatvisitor_chatinvitation"),
        ("routing", "0002_inbox_moved"),
        ("tickets", "0012_inbox_moves_here"),
    ]

    operations = [
        # The table stays where it is: only which app owns the model moves (tickets now).
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="call",
                    name="inbox",
                    field=models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="calls", to="tickets.inbox"
                    ),
                ),
                migrations.AlterField(
                    model_name="chatvisitor",
                    name="inbox",
                    field=models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="chat_visitors", to="tickets.inbox"
                    ),
                ),
                migrations.AlterField(
                    model_name="rawinbound",
                    name="inbox",
                    field=models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="raw_inbound",
                        to="tickets.inbox",
                    ),
                ),
                migrations.DeleteModel(
                    name="Inbox",
                ),
            ],
        ),
    ]
