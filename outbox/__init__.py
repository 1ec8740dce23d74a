"""The transactional outbox: deferred work that matters is a row written in the same
transaction as the change that causes it; Celery executes it, a beat sweeper
re-enqueues what a broker outage, a flush or a killed worker left behind.
Use `outbox.services.enqueue` / `register` / `Retry`."""
