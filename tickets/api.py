from django.db import IntegrityError
from django.http import FileResponse
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response

from customers import services as customer_services
from customers.models import Customer, Identity
from customers.selectors import customers_visible_to
from cxdesk.errors import ApplicationError
from cxdesk.memo import kept_clear, memo_scope
from integrations.idempotency import idempotent

from . import selectors, services
from .models import Attachment, Channel, Message, SavedView, Tag, Team, Ticket, TicketEvent
from .scanning import download_refusal


def _assignment(v: dict) -> dict:
    """`assignee` / `team` ids from validated input as the objects `ticket_update` takes (only
    the keys given; null unassigns), or a 400 naming the unknown one."""
    from django.contrib.auth import get_user_model

    kwargs: dict = {}
    if "assignee" in v:
        kwargs["assignee"] = None
        if v["assignee"] is not None:
            kwargs["assignee"] = (
                get_user_model().objects.filter(pk=v["assignee"], is_staff=True, is_active=True).first()
            )
            if kwargs["assignee"] is None:
                raise ApplicationError(
                    _("no such agent"), code="invalid_assignee", fields={"assignee": ["not an agent"]}
                )
    if "team" in v:
        kwargs["team"] = Team.objects.filter(pk=v["team"]).first() if v["team"] is not None else None
        if v["team"] is not None and kwargs["team"] is None:
            raise ApplicationError(_("no such team"), code="invalid_team", fields={"team": ["not found"]})
    return kwargs


def pk_from(kwargs: dict) -> int:
    """The URL's id as an int, or a 404 (never a 500 for `/tickets/abc/`)."""
    value = str(kwargs.get("pk", ""))
    if not value.isdecimal() or len(value) > 18:
        raise NotFound("no such object")
    return int(value)


class TicketCursor(CursorPagination):
    """Stable cursors. With `updated_since`, oldest change first (incremental sync)."""

    page_size = 50
    max_page_size = 200
    page_size_query_param = "page_size"
    ordering = ("-updated_at", "-id")

    def get_ordering(self, request, queryset, view):
        return ("updated_at", "id") if request.query_params.get("updated_since") else self.ordering


class MessageCursor(CursorPagination):
    page_size = 100
    max_page_size = 500
    page_size_query_param = "page_size"
    ordering = ("created_at", "id")


class CustomerRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class SurveySerializer(serializers.Serializer):
    csat = serializers.IntegerField(allow_null=True)
    ces = serializers.IntegerField(allow_null=True)
    comment = serializers.CharField()
    sent_at = serializers.DateTimeField()
    answered_at = serializers.DateTimeField(allow_null=True)


class TicketSerializer(serializers.ModelSerializer):
    reference = serializers.CharField(read_only=True)
    satisfaction = serializers.SerializerMethodField()
    customer = CustomerRefSerializer(read_only=True)
    tags = serializers.SlugRelatedField(slug_field="name", many=True, read_only=True)

    class Meta:
        model = Ticket
        fields = [
            "id", "reference", "subject", "status", "priority", "channel", "customer", "assignee", "team", "inbox",
            "tags", "merged_into", "created_at", "updated_at", "first_response_at", "solved_at",
            "last_customer_message_at", "last_message_at", "satisfaction",
        ]  # fmt: skip
        read_only_fields = fields

    @extend_schema_field(SurveySerializer(allow_null=True))
    def get_satisfaction(self, obj) -> dict | None:
        from django.core.exceptions import ObjectDoesNotExist

        try:
            survey = obj.survey
        except ObjectDoesNotExist:
            return None
        return SurveySerializer(survey).data


_TICKET_OUT = TicketSerializer()


def ticket_data(ticket: Ticket) -> dict:
    """`TicketSerializer(ticket).data`, from one serializer kept by the process — as a list
    serializer keeps one child for all its items. DRF builds a serializer's fields anew for
    every instance (model introspection, deep copies): 1.5 ms of a create's answer, against
    0.2 ms here. (The representation needs no request context.)"""
    return _TICKET_OUT.to_representation(ticket)


class CustomerInputSerializer(serializers.Serializer):
    id = serializers.IntegerField(required=False)
    email = serializers.CharField(required=False, allow_blank=True)
    phone = serializers.CharField(required=False, allow_blank=True)
    name = serializers.CharField(required=False, allow_blank=True, max_length=200)


class TicketCreateSerializer(serializers.Serializer):
    subject = serializers.CharField(max_length=500, allow_blank=True, required=False, default="")
    body = serializers.CharField(allow_blank=True, required=False, default="")
    customer = CustomerInputSerializer()
    priority = serializers.ChoiceField(choices=Ticket.Priority.choices, default=Ticket.Priority.NORMAL)


# One kept by the process validates every create, as a list serializer's one child validates
# all its items: DRF builds a serializer's fields anew (deep copies) for each instance, 0.27 ms
# of a create against 0.03 ms here.
_TICKET_IN = TicketCreateSerializer()


class TicketUpdateSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=Ticket.Status.choices, required=False)
    priority = serializers.ChoiceField(choices=Ticket.Priority.choices, required=False)
    assignee = serializers.IntegerField(required=False, allow_null=True)
    team = serializers.IntegerField(required=False, allow_null=True)
    tags = serializers.ListField(child=serializers.CharField(max_length=64), required=False)


class AttachmentSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()

    class Meta:
        model = Attachment
        fields = ["id", "filename", "content_type", "size", "sha256", "inline", "url", "scan_status", "scan_detail"]

    def get_url(self, obj) -> str:
        return f"/api/v1/attachments/{obj.pk}/"


class MessageSerializer(serializers.ModelSerializer):
    body = serializers.CharField(source="body_text")
    html = serializers.CharField(source="body_html")
    identity = serializers.SerializerMethodField()
    attachments = AttachmentSerializer(many=True, read_only=True)

    class Meta:
        model = Message
        fields = [
            "id", "ticket", "direction", "channel", "status", "error", "author", "identity", "subject", "body", "html",
            "thread_reason", "created_at", "sent_at", "delivered_at", "attachments",
        ]  # fmt: skip
        read_only_fields = fields

    def get_identity(self, obj) -> dict | None:
        return {"kind": obj.identity.kind, "address": obj.identity.address} if obj.identity_id else None


class TemplateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=512)
    language = serializers.CharField(max_length=15, default="en")
    components = serializers.ListField(child=serializers.DictField(), required=False)


class MessageCreateSerializer(serializers.Serializer):
    body = serializers.CharField()
    channel = serializers.ChoiceField(
        choices=[c for c in Channel.choices if c[0] not in ("portal", "api", "desk")], required=False
    )
    internal = serializers.BooleanField(default=False)
    status_after = serializers.ChoiceField(choices=Ticket.Status.choices, required=False)
    template = TemplateSerializer(
        required=False, help_text="An approved WhatsApp template, for when the 24-hour window is closed."
    )


class BulkSerializer(serializers.Serializer):
    ids = serializers.ListField(child=serializers.IntegerField(min_value=1), min_length=1, max_length=services.BULK_MAX)
    assignee = serializers.IntegerField(required=False, allow_null=True, help_text="Agent id, or null to unassign.")
    team = serializers.IntegerField(required=False, allow_null=True, help_text="Team id, or null.")
    status = serializers.ChoiceField(choices=Ticket.Status.choices, required=False)
    priority = serializers.ChoiceField(choices=Ticket.Priority.choices, required=False)
    add_tags = serializers.ListField(child=serializers.CharField(max_length=50), required=False, default=list)
    remove_tags = serializers.ListField(child=serializers.CharField(max_length=50), required=False, default=list)


class BulkResultSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=["done", "refused"])
    code = serializers.CharField(required=False)
    message = serializers.CharField(required=False)


class BulkResponseSerializer(serializers.Serializer):
    results = BulkResultSerializer(many=True)


class EventSerializer(serializers.ModelSerializer):
    class Meta:
        model = TicketEvent
        fields = ["id", "ticket", "kind", "actor", "data", "created_at"]


def _customer_for(data: dict, *, agent) -> tuple[Customer, Identity | None]:
    """The customer by id, email or phone — created when unknown — and the identity used.
    Unknown identities given together with a known one are added to that customer. A new
    single address that a simultaneous request took first raises IntegrityError, for the
    caller to run its transaction again (no savepoint here)."""
    from django.conf import settings

    from customers.normalize import normalize_address

    if data.get("id"):
        customer = customers_visible_to(agent=agent).filter(pk=data["id"]).first()
        if customer is None:
            raise ApplicationError(
                _("no such customer"), code="not_found", fields={"customer": ["not found"]}, status=404
            )
        return customer_services.live_customer(customer), None
    pairs = [(k, data[k]) for k in ("email", "phone") if data.get(k)]
    if not pairs:
        raise ApplicationError(
            _("customer needs an id, an email or a phone"), code="identity_required", fields={"customer": ["required"]}
        )
    region = settings.CXDESK_DEFAULT_REGION
    normalized = [(k, normalize_address(k, v, region)) for k, v in pairs]
    if len(normalized) == 1:
        # One address: found, or created with its customer (the unique constraint settles a
        # simultaneous create of the same address: the loser runs again and gets the one customer).
        (kind, address) = normalized[0]
        identity, _created = customer_services.identity_resolve(
            kind=kind, address=address, display_name=data.get("name", ""), caller_retries=True
        )
        return customer_services.live_customer(identity.customer), identity
    for attempt in range(2):
        existing = [customer_services.identity_with_customer(k, a) for k, a in normalized]
        found = next((i for i in existing if i is not None), None)
        if found is not None:
            break
        try:
            customer = customer_services.customer_create(name=data.get("name", ""), identities=normalized)
        except ApplicationError as exc:
            if exc.code != "identity_taken" or attempt:
                raise
            continue  # a simultaneous request created this customer first: use theirs
        return customer, customer.identities.order_by("pk").first()
    customer = customer_services.live_customer(found.customer)
    for (kind, address), known in zip(normalized, existing, strict=True):
        if known is None:
            customer_services.identity_add(customer=customer, kind=kind, address=address)
    return customer, found


@extend_schema(
    parameters=[
        OpenApiParameter("status", str, description="Comma-separated statuses."),
        OpenApiParameter("channel", str, description="Comma-separated channels."),
        OpenApiParameter("assignee", str, description="Agent id, 'me' or 'none'."),
        OpenApiParameter("customer", int),
        OpenApiParameter("tag", str),
        OpenApiParameter("updated_since", str, description="ISO 8601 with time zone; inclusive; oldest first."),
    ]
)
class TicketViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = TicketSerializer
    pagination_class = TicketCursor
    http_method_names = ["get", "post", "patch", "head", "options"]

    def get_queryset(self):
        return selectors.tickets_for_api(agent=self.request.user, params=self.request.query_params)

    def get_object(self) -> Ticket:
        ticket = selectors.ticket_get_for_agent(agent=self.request.user, ticket_id=pk_from(self.kwargs))
        if ticket is None:
            raise NotFound("no such ticket")
        return ticket

    @extend_schema(request=TicketCreateSerializer, responses={201: TicketSerializer})
    def create(self, request, *args, **kwargs):
        return idempotent(request, lambda: self._create(request))

    def _create(self, request):
        from outbox.services import batch as outbox_batch

        v = _TICKET_IN.run_validation(request.data)  # a 400 with the fields' errors, as is_valid raises
        # One transaction, which routes the new ticket before it commits (no outbox row, no
        # second transaction): the answer shows the team or agent it went to. A simultaneous
        # create of the same new customer that committed first fails it on the unique
        # address: it runs once more, and finds theirs.
        for attempt in (1, 2):
            try:
                with memo_scope(), outbox_batch(before_commit=("route",)):
                    customer, identity = _customer_for(v["customer"], agent=request.user)
                    ticket = services.ticket_open(
                        customer=customer,
                        subject=v["subject"],
                        body=v["body"],
                        channel=Channel.API,
                        identity=identity,
                        priority=v["priority"],
                    )
                break
            except IntegrityError:
                if attempt == 2:
                    raise
                kept_clear()  # and the configuration read afresh, should a kept row be gone
        # The creator is answered with what they created, as the transaction left it (routing
        # changed this instance), even when routing sent it to a team they cannot see (from
        # then on it is a 404 for them, like any other such ticket).
        return Response(ticket_data(ticket), status=201)

    @extend_schema(request=TicketUpdateSerializer, responses={200: TicketSerializer})
    def partial_update(self, request, *args, **kwargs):

        ticket = self.get_object()
        data = TicketUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        kwargs = _assignment(v)
        services.ticket_update(
            ticket=ticket,
            actor=request.user,
            status=v.get("status"),
            priority=v.get("priority"),
            tags=v.get("tags"),
            **kwargs,
        )
        return Response(ticket_data(self.get_object()))

    def update(self, request, *args, **kwargs):
        return self.partial_update(request, *args, **kwargs)

    @extend_schema(methods=["get"], responses={200: MessageSerializer(many=True)})
    @extend_schema(methods=["post"], request=MessageCreateSerializer, responses={201: MessageSerializer})
    @action(detail=True, methods=["get", "post"], pagination_class=MessageCursor)
    def messages(self, request, pk=None):
        ticket = self.get_object()
        if request.method == "GET":
            page = self.paginate_queryset(selectors.ticket_messages_qs(ticket=ticket))
            return self.get_paginated_response(MessageSerializer(page, many=True).data)
        return idempotent(request, lambda: self._post_message(request, ticket))

    def _post_message(self, request, ticket):
        data = MessageCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        if v["internal"]:
            message = services.note_add(ticket=ticket, author=request.user, body=v["body"])
        else:
            template = None
            if v.get("template"):
                t = v["template"]
                template = {"name": t["name"], "language": {"code": t["language"]}}
                if t.get("components"):
                    template["components"] = t["components"]
            message = services.reply(
                ticket=ticket,
                author=request.user,
                body=v["body"],
                channel=v.get("channel"),
                status_after=v.get("status_after"),
                template=template,
            )
        message.refresh_from_db()
        return Response(MessageSerializer(message).data, status=201)

    @extend_schema(request=BulkSerializer, responses={200: BulkResponseSerializer})
    @action(detail=False, methods=["post"])
    def bulk(self, request):
        """The same change on many tickets; a result per id (done, or refused with the reason)."""

        data = BulkSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        kwargs = _assignment(v)
        results = services.tickets_bulk_update(
            actor=request.user,
            ids=v["ids"],
            status=v.get("status"),
            priority=v.get("priority"),
            add_tags=v["add_tags"],
            remove_tags=v["remove_tags"],
            **kwargs,
        )
        out = [{k: val for k, val in vars(r).items() if val != ""} for r in results]
        return Response({"results": out})

    @extend_schema(responses={200: EventSerializer(many=True)})
    @action(detail=True, methods=["get"], pagination_class=MessageCursor)
    def events(self, request, pk=None):
        ticket = self.get_object()
        page = self.paginate_queryset(ticket.events.all())
        return self.get_paginated_response(EventSerializer(page, many=True).data)


class TeamSerializer(serializers.ModelSerializer):
    class Meta:
        model = Team
        fields = ["id", "name", "members"]


class TeamViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = TeamSerializer
    queryset = Team.objects.prefetch_related("members").order_by("id")


class AgentSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    name = serializers.CharField(source="get_full_name")
    email = serializers.CharField(help_text="May be empty.")


class AgentViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = AgentSerializer

    def get_queryset(self):
        from django.contrib.auth import get_user_model

        return get_user_model().objects.filter(is_staff=True, is_active=True).order_by("id")


class TagSerializer(serializers.ModelSerializer):
    class Meta:
        model = Tag
        fields = ["id", "name"]


class TagViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = TagSerializer
    queryset = Tag.objects.order_by("name")


class AttachmentViewSet(viewsets.GenericViewSet):
    """Download an attachment (permission-checked, always as a download)."""

    serializer_class = AttachmentSerializer

    def get_queryset(self):
        return Attachment.objects.filter(message__ticket__in=selectors.tickets_visible_to(agent=self.request.user))

    @extend_schema(responses={(200, "application/octet-stream"): bytes})
    def retrieve(self, request, pk=None):
        att = self.get_queryset().filter(pk=pk_from(self.kwargs)).first()
        if att is None or not att.file:
            raise NotFound("no such attachment")
        refusal = download_refusal(att)
        if refusal:
            raise ApplicationError(f"{att.filename} is {refusal[1]}", code=refusal[0], status=403)
        response = FileResponse(
            att.file.open("rb"), as_attachment=True, filename=att.filename, content_type="application/octet-stream"
        )
        response["X-Content-Type-Options"] = "nosniff"
        return response


class CannedResponseSerializer(serializers.ModelSerializer):
    class Meta:
        from .models import CannedResponse

        model = CannedResponse
        fields = ["id", "title", "body", "shortcut"]


class CannedResponseViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = CannedResponseSerializer

    def get_queryset(self):
        from .models import CannedResponse

        return CannedResponse.objects.filter(is_active=True).order_by("id")


class SavedViewSerializer(serializers.ModelSerializer):
    count = serializers.SerializerMethodField(help_text="Tickets in the view now.")
    filters = serializers.DictField(
        child=serializers.CharField(allow_blank=True),
        required=False,
        help_text="view (mine, unassigned, teams, open, pending, solved), channel, status, priority, tag, "
        "inbox_id, q, sla, sort.",
    )

    class Meta:
        model = SavedView
        fields = ["id", "name", "shared", "filters", "owner", "position", "count"]
        read_only_fields = ["id", "owner", "position", "count"]

    def get_count(self, obj) -> int:
        return self.context["counts"].get(obj.pk, 0) if "counts" in self.context else 0


class SavedViewViewSet(viewsets.ViewSet):
    """Saved inbox views: the caller's own and every shared one. Only the owner changes or
    deletes a view."""

    serializer_class = SavedViewSerializer
    queryset = SavedView.objects.none()  # for the schema only (the id's type); reads go through selectors

    def _get(self, request) -> SavedView:
        view = selectors.saved_view_get(agent=request.user, view_id=pk_from(self.kwargs))
        if view is None:
            raise NotFound("no such view")
        return view

    def _out(self, request, views: list[SavedView]):
        counts = selectors.saved_view_counts(agent=request.user, views=views)
        return SavedViewSerializer(views, many=True, context={"counts": counts}).data

    @extend_schema(responses={200: SavedViewSerializer(many=True)})
    def list(self, request):
        return Response(self._out(request, selectors.saved_views_for(agent=request.user)))

    @extend_schema(responses={200: SavedViewSerializer})
    def retrieve(self, request, pk=None):
        return Response(self._out(request, [self._get(request)])[0])

    @extend_schema(request=SavedViewSerializer, responses={201: SavedViewSerializer})
    def create(self, request):
        data = SavedViewSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        view = services.saved_view_save(
            owner=request.user, name=v["name"], filters=v.get("filters", {}), shared=v.get("shared", False)
        )
        return Response(self._out(request, [view])[0], status=201)

    @extend_schema(request=SavedViewSerializer, responses={200: SavedViewSerializer})
    def partial_update(self, request, pk=None):
        view = self._get(request)
        data = SavedViewSerializer(view, data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        view = services.saved_view_save(
            owner=request.user,
            view=view,
            name=v.get("name", view.name),
            filters=v.get("filters", view.filters),
            shared=v.get("shared", view.shared),
        )
        return Response(self._out(request, [view])[0])

    @extend_schema(responses={204: None})
    def destroy(self, request, pk=None):
        services.saved_view_delete(view=self._get(request), actor=request.user)
        return Response(status=204)
