"""/api/v1/: every app's viewsets on one router, the OpenAPI schema and its docs."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.pagination import CursorPagination
from rest_framework.routers import DefaultRouter

from accounts.api import StaffViewSet
from audit.api import AuditEntryViewSet
from channels_app.api import InboundEmailView, InboxViewSet
from customers.api import CustomerIdentityViewSet, CustomerViewSet
from integrations.api import ApiKeyViewSet, WebhookSubscriptionViewSet
from sla.api import MetricsView
from tickets.api import (
    AgentViewSet,
    AttachmentViewSet,
    CannedResponseViewSet,
    SavedViewViewSet,
    TagViewSet,
    TeamViewSet,
    TicketViewSet,
)


class IdCursor(CursorPagination):
    ordering = "id"
    page_size = 50


router = DefaultRouter()
router.register("tickets", TicketViewSet, basename="ticket")
router.register("customers", CustomerViewSet, basename="customer")
router.register("teams", TeamViewSet, basename="team")
router.register("agents", AgentViewSet, basename="agent")
router.register("staff", StaffViewSet, basename="staff")
router.register("tags", TagViewSet, basename="tag")
router.register("canned-responses", CannedResponseViewSet, basename="canned-response")
router.register("inboxes", InboxViewSet, basename="inbox")
router.register("attachments", AttachmentViewSet, basename="attachment")
router.register("api-keys", ApiKeyViewSet, basename="api-key")
router.register("webhooks", WebhookSubscriptionViewSet, basename="webhook")
router.register("views", SavedViewViewSet, basename="saved-view")
router.register("audit", AuditEntryViewSet, basename="audit")

for viewset in (
    CustomerViewSet,
    TeamViewSet,
    AgentViewSet,
    StaffViewSet,
    TagViewSet,
    InboxViewSet,
    ApiKeyViewSet,
    WebhookSubscriptionViewSet,
):
    viewset.pagination_class = IdCursor


class ApiDocsView(SpectacularSwaggerSplitView):
    """Swagger UI with its script served as a file (no inline script). Swagger UI itself
    writes inline styles (and its template has a <style> block), so this page alone allows
    inline styles; scripts stay self-only."""

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        response["Content-Security-Policy"] = DOCS_CSP
        return response


DOCS_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; object-src 'none'; base-uri 'none'"
)


identity_list = CustomerIdentityViewSet.as_view({"get": "list", "post": "create"})
identity_detail = CustomerIdentityViewSet.as_view({"delete": "destroy"})

urlpatterns = [
    path("customers/<str:customer_pk>/identities/", identity_list, name="customer-identities"),
    path("customers/<str:customer_pk>/identities/<str:pk>/", identity_detail, name="customer-identity"),
    path("inbound/email/", InboundEmailView.as_view(), name="inbound-email"),
    path("metrics/", MetricsView.as_view(), name="metrics"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", ApiDocsView.as_view(url_name="api-schema"), name="api-docs"),
    path("", include(router.urls)),
]
