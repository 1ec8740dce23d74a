from celery import shared_task


@shared_task(acks_late=True)
def route(ticket_id: int, trigger: str, message_id: int | None = None) -> int | None:
    from .services import route_ticket

    return route_ticket(ticket_id=ticket_id, trigger=trigger, message_id=message_id)


def route_handler(task) -> str:
    """Outbox handler for `route` rows."""
    from .services import route_ticket

    result = route_ticket(
        ticket_id=task.object_id, trigger=task.payload.get("trigger", ""), message_id=task.payload.get("message_id")
    )
    return str(result or "")


def route_many_handler(tasks) -> dict[int, str]:
    """Outbox handler for a batch's `route` rows: all in one transaction. Run before the
    commit that created a ticket (`outbox.services.batch(before_commit=…)`), a row carries
    the instance (`task.instance`), which nobody else can see yet: it is not read back."""
    from .services import route_tickets

    results = route_tickets(
        [(task.object_id, task.payload.get("trigger", ""), task.payload.get("message_id")) for task in tasks],
        known={task.object_id: task.instance for task in tasks if getattr(task, "instance", None) is not None},
    )
    return {task.pk: str(result or "") for task, result in zip(tasks, results, strict=True)}
