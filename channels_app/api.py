from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import parsers, serializers, viewsets
from rest_framework.response import Response
from rest_framework.views import APIView

from cxdesk.errors import ApplicationError
from integrations.idempotency import idempotent

from .email_inbound import mail_body_read
from .models import Inbox
from .services import ingest_raw_email


class InboxSerializer(serializers.ModelSerializer):
    webhook_url = serializers.SerializerMethodField()
    secrets_set = serializers.SerializerMethodField(help_text="Which secrets are set (never their values).")

    class Meta:
        model = Inbox
        fields = [
            "id",
            "name",
            "kind",
            "transport",
            "is_active",
            "config",
            "continuity_window",
            "webhook_url",
            "secrets_set",
        ]

    def get_webhook_url(self, obj) -> str | None:
        try:
            return obj.adapter.webhook_url(obj)
        except LookupError:
            return None

    def get_secrets_set(self, obj) -> list[str]:
        return sorted(k for k, v in obj.secrets.items() if v)


class InboxViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = InboxSerializer
    queryset = Inbox.objects.order_by("id")


class RawEmailParser(parsers.BaseParser):
    media_type = "*/*"

    def parse(self, stream, media_type=None, parser_context=None):
        return stream.read()


IngestResultSerializer = inline_serializer(
    "IngestResult",
    {
        "ticket": serializers.IntegerField(),
        "message": serializers.IntegerField(),
        "created_ticket": serializers.BooleanField(),
        "duplicate": serializers.BooleanField(),
    },
)


class InboundEmailView(APIView):
    """POST raw RFC 5322 bytes (message/rfc822 or application/octet-stream), for relays and MTAs.
    The answer is the same JSON as `ingest_mail` prints; 200 for a duplicate, 201 when new."""

    parser_classes = [RawEmailParser]

    @extend_schema(
        request={"message/rfc822": bytes, "application/octet-stream": bytes},
        parameters=[OpenApiParameter("inbox", str, description="Email inbox name (default: the first email inbox).")],
        responses={201: IngestResultSerializer, 200: IngestResultSerializer},
    )
    def post(self, request):
        # Mail is read under its own cap; an attachment over the attachment limit is then
        # dropped by ingest, not the mail.
        mail_body_read(request._request)
        return idempotent(request, lambda: self._post(request))

    def _post(self, request):
        raw = request.body
        if not raw.strip():
            raise ApplicationError("empty body: POST the raw message", code="empty_body")
        qs = Inbox.objects.filter(kind="email", is_active=True)
        name = request.query_params.get("inbox")
        inbox = qs.filter(name=name).first() if name else qs.order_by("pk").first()
        if inbox is None:
            raise ApplicationError(
                f"no email inbox {name!r}" if name else "no email inbox", code="no_inbox", status=404
            )
        result = ingest_raw_email(raw=raw, inbox=inbox, source="api")
        return Response(result.as_dict(), status=200 if result.duplicate else 201)
