from django.conf import settings
from django.db.models import Prefetch
from django.http import FileResponse
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response

from cxdesk.errors import ApplicationError
from integrations.idempotency import idempotent
from tickets.selectors import tickets_visible_to

from . import gdpr, selectors, services
from .models import Customer, CustomerMerge, Identity, Organization, PageView


class IdentitySerializer(serializers.ModelSerializer):
    class Meta:
        model = Identity
        fields = ["id", "kind", "address", "display_name", "opted_out_at", "last_seen_at"]


class CustomerSerializer(serializers.ModelSerializer):
    identities = IdentitySerializer(many=True, read_only=True)
    organization = serializers.CharField(source="organization.name", read_only=True, allow_null=True, default=None)

    class Meta:
        model = Customer
        fields = [
            "id",
            "name",
            "organization",
            "attributes",
            "language",
            "merged_into",
            "identities",
            "created_at",
            "updated_at",
        ]


class StatsSerializer(serializers.Serializer):
    tickets = serializers.IntegerField()
    open_tickets = serializers.IntegerField()
    channels = serializers.ListField(child=serializers.CharField())
    first_seen = serializers.DateTimeField(allow_null=True)
    last_contact = serializers.DateTimeField(allow_null=True)


class TicketBriefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    reference = serializers.CharField()
    subject = serializers.CharField()
    status = serializers.CharField()
    priority = serializers.CharField()
    channel = serializers.CharField()
    last_message_at = serializers.DateTimeField(allow_null=True)


class Customer360Serializer(CustomerSerializer):
    stats = serializers.SerializerMethodField()
    open_tickets = serializers.SerializerMethodField()
    tickets = serializers.SerializerMethodField()

    class Meta(CustomerSerializer.Meta):
        fields = [*CustomerSerializer.Meta.fields, "stats", "open_tickets", "tickets"]

    def get_stats(self, obj) -> dict:
        agent = self.context["request"].user
        return StatsSerializer(selectors.customer_stats(customer=obj, agent=agent).__dict__).data

    def get_open_tickets(self, obj) -> list[dict]:
        return TicketBriefSerializer([t for t in obj.tickets.all() if t.is_open], many=True).data

    def get_tickets(self, obj) -> list[dict]:
        tickets = sorted(obj.tickets.all(), key=lambda t: (not t.is_open,))
        return TicketBriefSerializer(tickets, many=True).data


class CustomerCreateSerializer(serializers.Serializer):
    name = serializers.CharField(required=False, allow_blank=True, max_length=200)
    email = serializers.CharField(required=False, allow_blank=True)
    phone = serializers.CharField(required=False, allow_blank=True)
    organization = serializers.CharField(required=False, allow_blank=True)


class PageViewSerializer(serializers.ModelSerializer):
    class Meta:
        model = PageView
        fields = ["id", "url", "title", "referrer", "visitor_id", "email_message_id", "created_at"]


class ActivityCursor(CursorPagination):
    ordering = ("-created_at", "-id")
    page_size = 50
    max_page_size = 200
    page_size_query_param = "page_size"


class MergeSerializer(serializers.Serializer):
    other = serializers.IntegerField(help_text="The customer merged into this one (kept as a tombstone).")


class UnmergeSerializer(serializers.Serializer):
    merge = serializers.IntegerField(help_text="The merge id to undo.")


@extend_schema(
    parameters=[
        OpenApiParameter("email", str, description="Look up by email (any case)."),
        OpenApiParameter(
            "phone",
            str,
            description="Look up by phone, any notation (+48 600…, 0048…, national with the default region).",
        ),
        OpenApiParameter("q", str, description="Name contains."),
    ]
)
class CustomerViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, viewsets.GenericViewSet
):
    """Customers. `?phone=` / `?email=` return the 360 summary for a phone system's screen-pop."""

    serializer_class = Customer360Serializer

    def get_serializer_class(self):
        # The 360 summary (stats per customer) for a lookup by identity or a single customer;
        # a plain listing stays a constant number of queries.
        params = self.request.query_params
        if self.action == "list" and not (params.get("email") or params.get("phone")):
            return CustomerSerializer
        return Customer360Serializer

    def get_queryset(self):
        qs = (
            selectors.customers_visible_to(agent=self.request.user)
            .select_related("organization")
            .prefetch_related("identities", Prefetch("tickets", queryset=tickets_visible_to(agent=self.request.user)))
        )
        params = self.request.query_params
        region = params.get("region") or settings.CXDESK_DEFAULT_REGION
        if params.get("email"):
            qs = qs.filter(
                pk__in=selectors.customer_lookup(agent=self.request.user, kind="email", value=params["email"])
            )
        if params.get("phone"):
            qs = qs.filter(
                pk__in=selectors.customer_lookup(
                    agent=self.request.user, kind="phone", value=params["phone"], region=region
                )
            )
        if params.get("q"):
            qs = qs.filter(name__icontains=params["q"])
        return qs.order_by("id")

    def get_object(self):
        from tickets.api import pk_from

        customer = selectors.customer_360(agent=self.request.user, customer_id=pk_from(self.kwargs))
        if customer is None:
            raise NotFound("no such customer")
        return customer

    @extend_schema(request=CustomerCreateSerializer, responses={201: Customer360Serializer})
    def create(self, request, *args, **kwargs):
        return idempotent(request, lambda: self._create(request))

    def _create(self, request):
        data = CustomerCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        identities = [(k, v[f]) for k, f in (("email", "email"), ("phone", "phone")) if v.get(f)]
        org = Organization.objects.get_or_create(name=v["organization"])[0] if v.get("organization") else None
        customer = services.customer_create(name=v.get("name", ""), identities=identities, organization=org)
        return Response(
            Customer360Serializer(
                selectors.customer_360(agent=request.user, customer_id=customer.pk), context={"request": request}
            ).data,
            status=201,
        )

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["get"])
    def timeline(self, request, pk=None):
        from tickets.api import MessageSerializer

        customer = self.get_object()
        page = self.paginate_queryset(
            selectors.customer_timeline(customer=customer, agent=request.user).prefetch_related("attachments")
        )
        return self.get_paginated_response(MessageSerializer(page, many=True, context={"request": request}).data)

    @extend_schema(responses={200: PageViewSerializer(many=True)})
    @action(detail=True, methods=["get"])
    def activity(self, request, pk=None):
        """The web trail: pages the customer viewed (newest first, cursor-paginated)."""
        customer = self.get_object()
        paginator = ActivityCursor()
        page = paginator.paginate_queryset(selectors.customer_activity(customer=customer), request, view=self)
        return paginator.get_paginated_response(PageViewSerializer(page, many=True).data)

    @extend_schema(
        request=MergeSerializer,
        responses={
            200: inline_serializer(
                "MergeResult",
                {
                    "merge": serializers.IntegerField(),
                    "kept": serializers.IntegerField(),
                    "other": serializers.IntegerField(),
                },
            )
        },
    )
    @action(detail=True, methods=["post"])
    def merge(self, request, pk=None):
        keep = self.get_object()
        data = MergeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        other = selectors.customers_visible_to(agent=request.user).filter(pk=data.validated_data["other"]).first()
        if other is None:
            raise ApplicationError(
                _("no such customer to merge"), code="not_found", fields={"other": ["not found"]}, status=404
            )
        merge = services.merge_customers(keep=keep, other=other, actor=request.user)
        return Response({"merge": merge.pk, "kept": keep.pk, "other": other.pk})

    @extend_schema(request=UnmergeSerializer, responses={200: Customer360Serializer})
    @action(detail=True, methods=["post"])
    def unmerge(self, request, pk=None):
        keep = self.get_object()
        data = UnmergeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        merge = CustomerMerge.objects.filter(pk=data.validated_data["merge"], kept=keep).first()
        if merge is None:
            raise ApplicationError(_("no such merge of this customer"), code="not_found", status=404)
        other = services.unmerge_customers(merge=merge, actor=request.user)
        return Response(
            Customer360Serializer(
                selectors.customer_360(agent=request.user, customer_id=other.pk), context={"request": request}
            ).data
        )

    @extend_schema(
        responses={(200, "application/zip"): OpenApiTypes.BINARY},
        description="GDPR export: a zip of customer.json (customer, identities, tickets, messages, events, "
        "surveys, activity) and the attachment files. Recorded in the audit log.",
    )
    @action(detail=True, methods=["get"])
    def export(self, request, pk=None):
        customer = self.get_object()
        content = gdpr.customer_export(customer=customer, actor=request.user)
        return FileResponse(
            content, as_attachment=True, filename=f"customer-{customer.pk}-export.zip", content_type="application/zip"
        )

    @extend_schema(
        request=None,
        responses={
            200: inline_serializer(
                "EraseResult",
                {
                    "customer": serializers.IntegerField(),
                    "erased": serializers.BooleanField(),
                    "counts": serializers.DictField(child=serializers.IntegerField()),
                },
            )
        },
        description="GDPR erasure (administrators): personal data and message content removed, identities and "
        "attachment files deleted, tickets kept as anonymous rows. Recorded in the audit log.",
    )
    @action(detail=True, methods=["post"])
    def erase(self, request, pk=None):
        customer = self.get_object()
        if not gdpr.can_erase_customer(request.user):
            raise ApplicationError(_("only administrators can erase customers"), code="permission_denied", status=403)
        counts = gdpr.customer_erase(customer=customer, actor=request.user)
        return Response({"customer": customer.pk, "erased": True, "counts": counts})


class IdentityCreateSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=Identity.Kind.choices)
    address = serializers.CharField(max_length=320)


@extend_schema(tags=["customers"])
class CustomerIdentityViewSet(viewsets.ViewSet):
    """A customer's identities: add one (409 with `owner` when another customer holds it;
    merge them instead) or remove one (a customer keeps at least one)."""

    serializer_class = IdentitySerializer

    def _customer(self, request) -> Customer:
        from tickets.api import pk_from

        customer_id = pk_from({"pk": self.kwargs.get("customer_pk")})
        customer = selectors.customers_visible_to(agent=request.user).filter(pk=customer_id).first()
        if customer is None:
            raise NotFound("no such customer")
        return customer

    @extend_schema(responses={200: IdentitySerializer(many=True)})
    def list(self, request, customer_pk=None):
        customer = self._customer(request)
        return Response(IdentitySerializer(customer.identities.order_by("kind", "address"), many=True).data)

    @extend_schema(request=IdentityCreateSerializer, responses={201: IdentitySerializer})
    def create(self, request, customer_pk=None):
        customer = self._customer(request)
        data = IdentityCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        identity = services.identity_add(customer=customer, actor=request.user, **data.validated_data)
        return Response(IdentitySerializer(identity).data, status=201)

    @extend_schema(responses={204: None})
    def destroy(self, request, customer_pk=None, pk=None):
        from tickets.api import pk_from

        customer = self._customer(request)
        identity = customer.identities.filter(pk=pk_from(self.kwargs)).first()
        if identity is None:
            raise NotFound("no such identity")
        services.identity_remove(identity=identity, actor=request.user)
        return Response(status=204)
