"""The three role groups (see accounts/roles.py). Staff users already in the database
keep seeing everything: they become supervisors, superusers are admins anyway."""

from django.db import migrations

ROLES = ("agent", "supervisor", "admin")


def create_roles(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    User = apps.get_model("auth", "User")
    groups = {name: Group.objects.get_or_create(name=name)[0] for name in ROLES}
    for user in User.objects.filter(is_staff=True, is_superuser=False).exclude(groups__name__in=ROLES):
        user.groups.add(groups["supervisor"])


def noop(apps, schema_editor):
    pass


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [migrations.RunPython(create_roles, noop)]
