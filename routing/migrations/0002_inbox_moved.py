import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("routing", "0001_initial"),
        ("tickets", "0012_inbox_moves_here"),
    ]

    operations = [
        # The table stays where it is: only which app owns the model moves (tickets now).
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="routingconfig",
                    name="inbox",
                    field=models.OneToOneField(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="routing",
                        to="tickets.inbox",
                    ),
                ),
            ],
        ),
    ]
