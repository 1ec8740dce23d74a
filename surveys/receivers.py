def on_ticket_updated(sender, *, ticket, changes=None, **kwargs):
    status = (changes or {}).get("status")
    if status and status[1] == "solved":
        from outbox.services import enqueue

        enqueue("send_survey", object_id=ticket.pk)  # in the solving transaction
