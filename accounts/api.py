"""`/api/v1/staff/`: staff users with their role and teams; admins change them (PATCH)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, viewsets
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from cxdesk.errors import ApplicationError
from tickets.api import pk_from

from . import services
from .roles import ROLES, is_admin, role_from_groups


class StaffSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    name = serializers.CharField(source="get_full_name")
    email = serializers.CharField()
    role = serializers.SerializerMethodField()
    teams = serializers.SerializerMethodField()
    two_factor = serializers.SerializerMethodField()

    def get_role(self, obj) -> str:
        return role_from_groups(obj) or ""

    def get_teams(self, obj) -> list[int]:
        return sorted(t.pk for t in obj.teams.all())

    def get_two_factor(self, obj) -> bool:
        device = getattr(obj, "totp_device", None)
        return bool(device and device.confirmed)


class StaffUpdateSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=ROLES)
    teams = serializers.ListField(child=serializers.IntegerField(min_value=1, max_value=2**62), max_length=500)


class StaffViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = StaffSerializer
    http_method_names = ["get", "patch", "head", "options"]

    def get_queryset(self):
        return (
            get_user_model()
            .objects.filter(is_staff=True, is_active=True)
            .select_related("totp_device")
            .prefetch_related("groups", "teams")
            .order_by("id")
        )

    def get_object(self):
        user = self.get_queryset().filter(pk=pk_from(self.kwargs)).first()
        if user is None:
            raise NotFound("no such staff user")
        return user

    @extend_schema(request=StaffUpdateSerializer, responses={200: StaffSerializer})
    def partial_update(self, request, *args, **kwargs):
        if not is_admin(request.user):
            raise ApplicationError(_("only admins change roles and teams"), code="forbidden", status=403)
        user = self.get_object()
        data = StaffUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.staff_access_set(
            user=user, role=data.validated_data["role"], team_ids=data.validated_data["teams"], by=request.user
        )
        return Response(StaffSerializer(self.get_object()).data)
