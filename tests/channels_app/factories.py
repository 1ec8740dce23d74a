import factory

from channels_app.models import Channel, Inbox
from channels_app.types import InboundMessage, SenderRef


class InboxFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Inbox
        django_get_or_create = ("name",)

    kind = "email"
    name = factory.Sequence(lambda n: f"inbox-{n}")
    config = factory.LazyFunction(dict)
    transport = Inbox.Transport.FILE


_seq = iter(range(1, 10**9))


def inbound(inbox, *, channel=Channel.SMS, kind="phone", address="+48600100200", text="hello", **kw) -> InboundMessage:
    """An InboundMessage as an adapter would produce it."""
    kw.setdefault("provider_message_id", f"pm-{next(_seq)}")
    return InboundMessage(
        inbox=inbox,
        channel=channel,
        sender=SenderRef(kind=kind, address=address, display_name=kw.pop("display_name", "")),
        text=text,
        **kw,
    )


def email_inbound(
    inbox, *, address="jan@example.com", subject="Help", text="Hi", message_id=None, **kw
) -> InboundMessage:
    mid = message_id or f"<m{next(_seq)}@client.example>"
    return inbound(
        inbox,
        channel=Channel.EMAIL,
        kind="email",
        address=address,
        subject=subject,
        text=text,
        email_message_id=mid,
        provider_message_id=mid,
        **kw,
    )
