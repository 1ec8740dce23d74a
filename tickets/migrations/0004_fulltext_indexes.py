"""Full-text search indexes for the desk's search (PostgreSQL only; SQLite searches with
LIKE). The expressions match `SearchVector(<field>, config="simple")` exactly, so the
planner uses them."""

from django.db import migrations

INDEXES = [
    ("ticket_subject_fts", "tickets_ticket", "subject"),
    ("message_body_fts", "tickets_message", "body_text"),
]


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, table, column in INDEXES:
        schema_editor.execute(
            f'CREATE INDEX IF NOT EXISTS {name} ON {table} USING gin (to_tsvector(\'simple\'::regconfig, COALESCE("{column}", \'\')))'
        )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, _, _ in INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("tickets", "0003_canned_response")]
    operations = [migrations.RunPython(create, drop)]
