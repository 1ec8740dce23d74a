from django.apps import AppConfig


class RoutingConfig(AppConfig):
    name = "routing"

    def ready(self) -> None:
        from . import receivers

        receivers.connect()

        from outbox.services import register

        register("route", "routing.tasks.route_handler", queue="default", many="routing.tasks.route_many_handler")
