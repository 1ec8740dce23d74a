"""seed_demo: idempotent demo data for `make run`.

Two teams, three agents and an admin; an email, an SMS (Twilio) and a WhatsApp inbox on
the development transport (replies are written to var/outbox/ and var/mail/); ~50
customers, some with both an email and a phone identity; ~200 tickets, including
conversations that moved from email to SMS and back. Everything goes through the same
services as production (ingest, reply, ticket_update); timestamps are then spread over
the past weeks so queues and reports look lived-in."""

from __future__ import annotations

import random
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from channels_app.models import Channel, Inbox
from channels_app.services import ingest
from channels_app.types import InboundMessage, SenderRef
from cxdesk.errors import ApplicationError
from tickets.models import Message, Team, Ticket, TicketEvent
from tickets.services import note_add, reply, ticket_update

AGENTS = [("ana", "Ana", "Kowalska"), ("ben", "Ben", "Okafor"), ("cara", "Cara", "Rossi")]
PASSWORD = "demo"  # noqa: S105 - demo data only, printed for the user
FIRST = ["Jan", "Ola", "Marek", "Zofia", "Piotr", "Giulia", "Luca", "Maria", "Tomasz", "Ewa", "Sara", "Omar",
         "Lena", "Noah", "Mia", "Ivan", "Nina", "Paulo", "Aiko", "Daniel", "Hana", "Karim", "Julia", "Adam", "Eva"]  # fmt: skip
LAST = ["Nowak", "Bianchi", "Smith", "Wiśniewska", "Rossi", "Garcia", "Müller", "Kim", "Novak", "Silva"]
SUBJECTS = [
    ("Where is my order?", "Hi, my order {n} has not arrived yet. Can you check?"),
    ("Refund request", "I returned the parcel last week, when will I get my money back?"),
    ("Cannot log in", "The password reset link does not work for me."),
    ("Invoice needed", "Please send me an invoice with our VAT number."),
    ("Damaged item", "The mug arrived broken, photos attached."),
    ("Change delivery address", "Can you deliver to my office instead?"),
    ("Subscription cancel", "Please cancel my subscription at the end of the month."),
    ("Wrong size", "I got M instead of L. How do I exchange it?"),
]
SMS_LINES = ["any news on this?", "ok thanks", "can you call me?", "still waiting…", "I sent the photos by email"]
AGENT_LINES = [
    "Thanks for reaching out — I'm checking this with our warehouse now.",
    "I've issued the refund; it should show on your statement in 3–5 days.",
    "Here is a new link; it is valid for 24 hours.",
    "Sorry about that! A replacement is on its way.",
]


class Command(BaseCommand):
    help = "Load idempotent demo data and print the demo logins."

    def add_arguments(self, parser):
        parser.add_argument("--tickets", type=int, default=240)
        parser.add_argument("--customers", type=int, default=50)

    def handle(self, *args, tickets: int, customers: int, **options):
        User = get_user_model()
        if Ticket.objects.exists() and User.objects.filter(username="ana").exists():
            self.stdout.write("Demo data already loaded.")
        else:
            self._seed(tickets, customers)
        self._webchat()
        self._print_logins()

    def _webchat(self) -> None:
        """The demo's web-chat inbox (the page /demo/shop/ embeds its widget)."""
        from django.conf import settings

        from channels_app.services import inbox_upsert

        origins = {settings.PUBLIC_URL, "http://127.0.0.1:8000", "http://localhost:8000"}
        values = {
            "allowed_origins": ",".join(sorted(origins)),
            "prechat": "optional",
            "offline_after_minutes": "5",
            "invitations": '[{"rule": "email_link"}, {"rule": "time_on_page", "url": "/demo/shop/pricing/", '
            '"seconds": 20, "message": "Comparing plans? Ask us anything."}, '
            '{"rule": "returning", "url": "*", "visits": 3}]',
        }
        team = Team.objects.filter(name="Support").first()
        if team is not None:
            values["default_team"] = team.name
        inbox_upsert(kind="webchat", name="Web chat", values=values)

    def _seed(self, n_tickets: int, n_customers: int) -> None:
        rnd = random.Random(42)
        User = get_user_model()
        if not User.objects.filter(username="admin").exists():
            User.objects.create_superuser("admin", "admin@cxdesk.localhost", "admin")
        agents = []
        for username, first, last in AGENTS:
            user, created = User.objects.get_or_create(
                username=username,
                defaults={
                    "first_name": first,
                    "last_name": last,
                    "is_staff": True,
                    "email": f"{username}@cxdesk.localhost",
                },
            )
            if created:
                user.set_password(PASSWORD)
                user.save()
            agents.append(user)
        support, _ = Team.objects.get_or_create(name="Support", defaults={"is_default": True})
        billing, _ = Team.objects.get_or_create(name="Billing")
        support.members.add(agents[0], agents[1])
        billing.members.add(agents[1], agents[2])
        # Roles (accounts app): Ana and Cara are agents who see their team's inboxes, Ben
        # supervises both teams and sees everything; admin is a superuser (an admin).
        from accounts.services import role_set

        for user, role in zip(agents, ("agent", "supervisor", "agent"), strict=True):
            role_set(user=user, role=role)

        email, _ = Inbox.objects.get_or_create(
            name="Support email",
            defaults={"kind": "email", "config": {"address": "support@cxdesk.localhost", "from_name": "cxdesk Support"},
                      "transport": Inbox.Transport.FILE, "default_team": support},
        )  # fmt: skip
        sms, _ = Inbox.objects.get_or_create(
            name="SMS",
            defaults={"kind": "twilio", "config": {"phone_number": "+48221234567", "default_region": "PL"},
                      "transport": Inbox.Transport.FILE, "default_team": support},
        )  # fmt: skip
        whatsapp, _ = Inbox.objects.get_or_create(
            name="WhatsApp",
            defaults={"kind": "whatsapp", "config": {"phone_number_id": "100000000000001", "default_region": "PL"},
                      "transport": Inbox.Transport.FILE, "default_team": billing},
        )  # fmt: skip

        from routing.models import AgentProfile, RoutingConfig
        from sla.models import BusinessCalendar, SlaPolicy

        for user in agents:
            # Room for the demo's open tickets plus the new ones a visitor sends in.
            AgentProfile.objects.update_or_create(user=user, defaults={"max_concurrent": 60})
        RoutingConfig.objects.get_or_create(team=support, defaults={"strategy": RoutingConfig.Strategy.ROUND_ROBIN})
        RoutingConfig.objects.get_or_create(team=billing, defaults={"strategy": RoutingConfig.Strategy.LEAST_LOADED})
        office, _ = BusinessCalendar.objects.get_or_create(
            name="Office (Warsaw)", defaults={"timezone": "Europe/Warsaw"}
        )
        office.teams.add(support, billing)
        SlaPolicy.objects.get_or_create(
            name="Email",
            channel="email",
            defaults={"first_response_minutes": 480, "resolution_minutes": 2400, "calendar": office},
        )
        SlaPolicy.objects.get_or_create(
            name="SMS / WhatsApp",
            channel="sms",
            defaults={"first_response_minutes": 60, "resolution_minutes": 960, "calendar": office},
        )
        SlaPolicy.objects.get_or_create(
            name="WhatsApp",
            channel="whatsapp",
            defaults={"first_response_minutes": 60, "resolution_minutes": 960, "calendar": office},
        )
        SlaPolicy.objects.get_or_create(
            name="Urgent, any channel",
            priority="urgent",
            defaults={"first_response_minutes": 30, "resolution_minutes": 240, "escalate_to": agents[1]},
        )

        people = []
        for i in range(n_customers):
            name = f"{FIRST[i % len(FIRST)]} {LAST[(i * 7) % len(LAST)]}"
            mail = f"{name.split()[0].lower()}.{i}@example.com"
            phone = f"+48600{100000 + i * 37:06d}"
            kind = "both" if i % 10 < 3 else ("email" if i % 10 < 7 else "phone")
            people.append((name, mail if kind != "phone" else None, phone if kind != "email" else None))

        seq = 0
        now = timezone.now()
        made: list[tuple[int, timedelta]] = []
        for t in range(n_tickets):
            name, mail, phone = people[t % n_customers]
            subject, body = SUBJECTS[t % len(SUBJECTS)]
            age = timedelta(days=rnd.uniform(0, 28), hours=rnd.uniform(0, 23))
            seq += 1
            if mail and (not phone or rnd.random() < 0.6):
                first = self._in(
                    email,
                    Channel.EMAIL,
                    "email",
                    mail,
                    name,
                    f"<demo-{seq}@example.com>",
                    body.format(n=1000 + t),
                    subject,
                )
            else:
                channel = Channel.WHATSAPP if rnd.random() < 0.4 else Channel.SMS
                first = self._in(
                    whatsapp if channel == Channel.WHATSAPP else sms,
                    channel,
                    "phone",
                    phone,
                    name,
                    f"demo-{seq}",
                    body.format(n=1000 + t),
                )
            if phone and mail:
                # the same person, both identities: link the phone to them (a merge in real life)
                customer = first.ticket.customer
                if not customer.identities.filter(kind="phone").exists():
                    from customers.models import Identity

                    other = Identity.objects.filter(kind="phone", address=phone).select_related("customer").first()
                    if other is None:
                        Identity.objects.create(customer=customer, kind="phone", address=phone)
            ticket = first.ticket
            agent = agents[t % 3]
            roll = rnd.random()
            try:
                if roll < 0.75:
                    reply(ticket=ticket, author=agent, body=rnd.choice(AGENT_LINES))
                if phone and mail and roll < 0.5:
                    # the customer follows up by SMS, the agent answers by email: one ticket
                    seq += 1
                    self._in(sms, Channel.SMS, "phone", phone, name, f"demo-{seq}", rnd.choice(SMS_LINES))
                    reply(ticket=ticket, author=agent, body="Got your text — details by email.", channel=Channel.EMAIL)
                if roll < 0.2:
                    note_add(ticket=ticket, author=agent, body="Checked with the warehouse; parcel is in Poznań.")
                if roll < 0.45:
                    ticket_update(ticket=ticket, actor=agent, status=Ticket.Status.SOLVED)
                elif roll < 0.55:
                    ticket_update(ticket=ticket, actor=agent, status=Ticket.Status.PENDING)
                if t % 9 == 0:
                    ticket_update(ticket=ticket, actor=agent, priority=Ticket.Priority.HIGH, tags=["vip"])
            except ApplicationError as exc:
                self.stderr.write(f"demo ticket {ticket.pk}: {exc.message}")
            made.append((ticket.pk, age))
        self._spread(made, now)

    def _in(self, inbox, channel, kind, address, name, pmid, text, subject=""):
        return ingest(
            InboundMessage(
                inbox=inbox,
                channel=channel,
                sender=SenderRef(kind=kind, address=address, display_name=name),
                provider_message_id=pmid,
                subject=subject,
                text=text,
                email_message_id=pmid if channel == Channel.EMAIL else "",
            )
        )

    @transaction.atomic
    def _spread(self, made: list[tuple[int, timedelta]], now) -> None:
        """Move each demo ticket's history back in time, keeping its internal order."""
        for ticket_id, age in made:
            start = now - age
            step = timedelta(minutes=37)
            msgs = list(Message.objects.filter(ticket_id=ticket_id).order_by("created_at", "id"))
            for i, m in enumerate(msgs):
                at = start + step * i
                Message.objects.filter(pk=m.pk).update(created_at=at, received_at=at, sent_at=at if m.sent_at else None)
            for i, e in enumerate(TicketEvent.objects.filter(ticket_id=ticket_id).order_by("created_at", "id")):
                TicketEvent.objects.filter(pk=e.pk).update(created_at=start + step * i)
            last = start + step * max(len(msgs) - 1, 0)
            ticket = Ticket.objects.get(pk=ticket_id)
            first_out = next((start + step * i for i, m in enumerate(msgs) if m.direction == "outbound"), None)
            last_in = max((start + step * i for i, m in enumerate(msgs) if m.direction == "inbound"), default=None)
            Ticket.objects.filter(pk=ticket_id).update(
                created_at=start,
                last_message_at=last,
                last_customer_message_at=last_in,
                first_response_at=first_out,
                solved_at=last + timedelta(minutes=5) if ticket.solved_at else None,
            )

    def _print_logins(self) -> None:
        from customers.models import Identity

        demo_email = Identity.objects.filter(kind="email").order_by("pk").values_list("address", flat=True).first()
        self.stdout.write(
            "\n".join(
                [
                    "",
                    "cxdesk demo — http://127.0.0.1:8000/",
                    f"  Desk (/desk/sign-in/): ana / {PASSWORD} (agent, Support), ben / {PASSWORD} (supervisor),"
                    f" cara / {PASSWORD} (agent, Billing)",
                    "  Admin (/admin/): admin / admin",
                    "  Web chat: open /demo/shop/ (a shop page with the widget) in one tab, the desk in another",
                    f"  Portal (/portal/): sign in as {demo_email or 'a demo customer'}; the magic link is written to var/mail/",
                    "",
                ]
            )
        )
