"""GET /api/v1/audit/: the audit log for administrators, newest first, cursor-paginated."""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, permissions, serializers, viewsets
from rest_framework.pagination import CursorPagination

from . import selectors
from .models import AuditEntry


class AuditEntrySerializer(serializers.ModelSerializer):
    actor = serializers.IntegerField(source="actor_id", allow_null=True, read_only=True)
    api_key = serializers.IntegerField(source="api_key_id", allow_null=True, read_only=True)

    class Meta:
        model = AuditEntry
        fields = [
            "id",
            "created_at",
            "action",
            "actor",
            "actor_label",
            "api_key",
            "api_key_label",
            "object_type",
            "object_id",
            "data",
            "ip",
            "user_agent",
        ]


class CanViewAudit(permissions.BasePermission):
    message = "only administrators can read the audit log"

    def has_permission(self, request, view):
        return selectors.can_view_audit(request.user)


class NewestFirst(CursorPagination):
    ordering = ("-created_at", "-id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


@extend_schema(
    parameters=[
        OpenApiParameter("actor", str, description="User id or username."),
        OpenApiParameter("action", str, enum=AuditEntry.Action.values),
        OpenApiParameter("object_type", str, description="e.g. customers.customer"),
        OpenApiParameter("object_id", str),
        OpenApiParameter("since", str, description="First day, YYYY-MM-DD (UTC)."),
        OpenApiParameter("until", str, description="Last day, YYYY-MM-DD (UTC), inclusive."),
    ]
)
class AuditEntryViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """The append-only audit log (administrators only)."""

    serializer_class = AuditEntrySerializer
    pagination_class = NewestFirst

    def get_permissions(self):
        return [*super().get_permissions(), CanViewAudit()]

    def get_queryset(self):
        p = self.request.query_params
        return selectors.audit_entries(
            viewer=self.request.user,
            **{k: p.get(k, "") for k in ("actor", "action", "object_type", "object_id", "since", "until")},
        )
