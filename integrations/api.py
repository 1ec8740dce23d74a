from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from . import services
from .models import ApiKey, WebhookDelivery, WebhookSubscription


class ApiKeySerializer(serializers.ModelSerializer):
    class Meta:
        model = ApiKey
        fields = ["id", "name", "prefix", "scope", "created_at", "last_used_at", "revoked_at"]
        read_only_fields = ["id", "prefix", "created_at", "last_used_at", "revoked_at"]


class ApiKeyCreatedSerializer(ApiKeySerializer):
    key = serializers.CharField(read_only=True, help_text="Shown once.")

    class Meta(ApiKeySerializer.Meta):
        fields = [*ApiKeySerializer.Meta.fields, "key"]


class ApiKeyViewSet(mixins.ListModelMixin, mixins.CreateModelMixin, viewsets.GenericViewSet):
    """The caller's own API keys."""

    serializer_class = ApiKeySerializer
    queryset = ApiKey.objects.none()  # for the schema (path parameter types); requests use get_queryset

    def get_queryset(self):
        return ApiKey.objects.filter(user=self.request.user)

    @extend_schema(request=ApiKeySerializer, responses={201: ApiKeyCreatedSerializer})
    def create(self, request, *args, **kwargs):
        data = ApiKeySerializer(data=request.data)
        data.is_valid(raise_exception=True)
        record, key = services.api_key_create(
            user=request.user,
            name=data.validated_data["name"],
            scope=data.validated_data.get("scope", "read_write"),
            actor=request.user,
        )
        return Response({**ApiKeySerializer(record).data, "key": key}, status=201)

    @extend_schema(request=None, responses={200: ApiKeySerializer})
    @action(detail=True, methods=["post"])
    def revoke(self, request, pk=None):
        from tickets.api import pk_from

        key = self.get_queryset().filter(pk=pk_from(self.kwargs)).first()
        if key is None:
            from rest_framework.exceptions import NotFound

            raise NotFound("no such key")
        return Response(ApiKeySerializer(services.api_key_revoke(key=key, actor=request.user)).data)


class WebhookSubscriptionSerializer(serializers.ModelSerializer):
    events = serializers.ListField(child=serializers.ChoiceField(choices=WebhookSubscription.EVENTS))

    class Meta:
        model = WebhookSubscription
        fields = [
            "id",
            "url",
            "events",
            "is_active",
            "consecutive_failures",
            "disabled_at",
            "disabled_reason",
            "created_at",
        ]
        read_only_fields = ["id", "is_active", "consecutive_failures", "disabled_at", "disabled_reason", "created_at"]


class WebhookCreatedSerializer(WebhookSubscriptionSerializer):
    secret = serializers.CharField(read_only=True, help_text="Signs deliveries; shown once.")

    class Meta(WebhookSubscriptionSerializer.Meta):
        fields = [*WebhookSubscriptionSerializer.Meta.fields, "secret"]


class WebhookDeliverySerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "event",
            "status",
            "attempts",
            "response_code",
            "latency_ms",
            "error",
            "created_at",
            "last_attempt_at",
        ]


class WebhookSubscriptionViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = WebhookSubscriptionSerializer
    queryset = WebhookSubscription.objects.all()

    @extend_schema(request=WebhookSubscriptionSerializer, responses={201: WebhookCreatedSerializer})
    def create(self, request, *args, **kwargs):
        data = WebhookSubscriptionSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        sub, secret = services.webhook_subscribe(
            url=data.validated_data["url"], events=data.validated_data["events"], user=request.user
        )
        return Response({**WebhookSubscriptionSerializer(sub).data, "secret": secret}, status=201)

    @extend_schema(responses={200: WebhookDeliverySerializer(many=True)})
    @action(detail=True, methods=["get"])
    def deliveries(self, request, pk=None):
        sub = self.get_object()
        page = self.paginate_queryset(sub.deliveries.all())
        return self.get_paginated_response(WebhookDeliverySerializer(page, many=True).data)
