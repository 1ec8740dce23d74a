from django.apps import AppConfig


class SlaConfig(AppConfig):
    name = "sla"
    verbose_name = "SLAs and measures"

    def ready(self) -> None:
        from . import receivers

        receivers.connect()
