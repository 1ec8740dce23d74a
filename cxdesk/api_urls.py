"""/api/v1/: every app's viewsets on one router, the OpenAPI schema and its docs."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.pagination import CursorPagination
from rest_framework.routers import DefaultRouter

from audit.api import AuditEntryViewSet
from channels_app.api import InboundEmailView, InboxViewSet
from customers.api import CustomerViewSet
from integrations.api import ApiKeyViewSet, WebhookSubscriptionViewSet
from sla.api import MetricsView
from tickets.api import AgentViewSet, AttachmentViewSet, CannedResponseViewSet, TagViewSet, TeamViewSet, TicketViewSet


class IdCursor(CursorPagination):
    ordering = "id"
    page_size = 50


router = DefaultRouter()
router.register("tickets", TicketViewSet, basename="ticket")
router.register("customers", CustomerViewSet, basename="customer")
router.register("teams", TeamViewSet, basename="team")
router.register("agents", AgentViewSet, basename="agent")
router.register("tags", TagViewSet, basename="tag")
router.register("canned-responses", CannedResponseViewSet, basename="canned-response")
router.register("inboxes", InboxViewSet, basename="inbox")
router.register("attachments", AttachmentViewSet, basename="attachment")
router.register("api-keys", ApiKeyViewSet, basename="api-key")
router.register("webhooks", WebhookSubscriptionViewSet, basename="webhook")
router.register("audit", AuditEntryViewSet, basename="audit")

for viewset in (
    CustomerViewSet,
    TeamViewSet,
    AgentViewSet,
    TagViewSet,
    InboxViewSet,
    ApiKeyViewSet,
    WebhookSubscriptionViewSet,
):
    viewset.pagination_class = IdCursor

urlpatterns = [
    path("inbound/email/", InboundEmailView.as_view(), name="inbound-email"),
    path("metrics/", MetricsView.as_view(), name="metrics"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("", include(router.urls)),
]
