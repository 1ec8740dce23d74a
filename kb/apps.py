from django.apps import AppConfig


class KbConfig(AppConfig):
    name = "kb"
    verbose_name = "Knowledge base"

    def ready(self) -> None:
        from customers.signals import customer_erasing, customer_exporting

        from . import gdpr

        customer_exporting.connect(gdpr.on_customer_exporting, dispatch_uid="kb.gdpr_export")
        customer_erasing.connect(gdpr.on_customer_erasing, dispatch_uid="kb.gdpr_erase")
