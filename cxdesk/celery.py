import os

from celery import Celery
from celery.signals import worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cxdesk.settings")

app = Celery("cxdesk")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

from cxdesk.observability import connect_celery_signals  # noqa: E402

connect_celery_signals()


@worker_init.connect(weak=False, dispatch_uid="cxdesk-worker-nice")
def _lower_priority(**kwargs) -> None:
    """Background work yields the CPU to the web processes on a shared box: a burst of
    webhooks is answered first and drained right after (CXDESK_WORKER_NICE, 0 to disable).
    Set in the worker's main process before its pool starts: the pool's processes (and an
    embedded beat) inherit it."""
    from django.conf import settings

    nice = settings.CXDESK_WORKER_NICE
    if nice:
        os.nice(nice)
        _autogroup_nice(nice)


def _autogroup_nice(nice: int) -> None:
    """Linux (sched_autogroup) gives each session a group of its own and shares the CPU
    between the groups first: a nice value counts only against the processes of the same
    session. A worker started in a session of its own (deploy/serve.py starts each process
    so; a service manager too) lowers its session's group, or its nice would not weigh
    against the web processes at all. A worker in someone else's session (a shell's) leaves
    the group alone: it holds more than the worker. (In containers, each is a cgroup: there
    the CPU weight is compose's `cpu_shares`.)"""
    if os.getsid(0) != os.getpid():
        return
    try:
        with open("/proc/self/autogroup", "w") as autogroup:
            autogroup.write(str(nice))
    except OSError:  # no autogroups in this kernel
        pass
