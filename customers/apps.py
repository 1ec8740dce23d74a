from django.apps import AppConfig


class CustomersConfig(AppConfig):
    name = "customers"

    def ready(self) -> None:
        from cxdesk.memo import watch

        from .models import Organization

        watch(Organization)  # which organisation owns an email domain (`services._organization_for`)
