import factory
from django.contrib.auth import get_user_model

from channels_app.models import Channel
from customers.models import Customer, Identity
from tickets.models import Team, Ticket


class AgentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"agent{n}")
    is_staff = True
    password = factory.django.Password("pw")

    @factory.post_generation
    def role(self, create, extracted, **kwargs):
        """`role="agent"` for a team-scoped agent; by default staff made here are
        supervisors (they see every ticket, as tests not about scoping expect)."""
        if not create or not self.is_staff or self.is_superuser:
            return
        from django.contrib.auth.models import Group

        name = extracted or "supervisor"
        if not self.groups.filter(name__in=("agent", "supervisor", "admin")).exists() or extracted:
            self.groups.set([Group.objects.get_or_create(name=name)[0]])


class TeamFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Team
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"team-{n}")


class CustomerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Customer

    name = factory.Faker("name")


class IdentityFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Identity

    customer = factory.SubFactory(CustomerFactory)
    kind = "email"
    address = factory.Sequence(lambda n: f"c{n}@example.com")


class TicketFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Ticket

    customer = factory.SubFactory(CustomerFactory)
    subject = factory.Sequence(lambda n: f"Ticket {n}")
    channel = Channel.EMAIL
