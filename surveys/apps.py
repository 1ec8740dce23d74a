from django.apps import AppConfig


class SurveysConfig(AppConfig):
    name = "surveys"
    verbose_name = "Satisfaction surveys"

    def ready(self) -> None:
        from tickets.signals import ticket_updated

        from .receivers import on_ticket_updated

        ticket_updated.connect(on_ticket_updated, dispatch_uid="surveys.on_solved")

        from outbox.services import register

        register("send_survey", "surveys.tasks.survey_handler", queue="default")
