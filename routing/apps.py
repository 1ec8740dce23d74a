from django.apps import AppConfig


class RoutingConfig(AppConfig):
    name = "routing"

    def ready(self) -> None:
        from . import receivers

        receivers.connect()

        from outbox.services import register

        register("route", "routing.tasks.route_handler", queue="default", many="routing.tasks.route_many_handler")

        from cxdesk.memo import watch
        from tickets.models import Team

        from .models import RoutingConfig, Rule

        watch(Rule, RoutingConfig, Team)  # the rules, who has a routing config, the default team
