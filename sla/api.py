from datetime import timedelta

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from cxdesk.dates import parse_datetime
from cxdesk.errors import ApplicationError

from .metrics import DIMENSIONS, measures, volume_by_hour


def period(params) -> tuple:
    end = parse_datetime(params["end"]) if params.get("end") else timezone.now()
    start = parse_datetime(params["start"]) if params.get("start") else (end - timedelta(days=30) if end else None)
    if start is None or end is None or start.tzinfo is None or end.tzinfo is None:
        raise ApplicationError(
            "start and end are ISO 8601 datetimes with a time zone",
            code="invalid_period",
            fields={"start": ["invalid"]},
        )
    if end <= start:
        raise ApplicationError("end must be after start", code="invalid_period", fields={"end": ["before start"]})
    by = params.get("by", "channel")
    if by not in DIMENSIONS:
        raise ApplicationError(
            f"by is one of {', '.join(DIMENSIONS)}", code="invalid_dimension", fields={"by": ["invalid"]}
        )
    return start, end, by


class MetricsView(APIView):
    """The desk's measures for tickets created in [start, end) (default: the last 30 days),
    by channel, team or agent. Definitions: docs/measures.md."""

    @extend_schema(
        parameters=[
            OpenApiParameter("start", str),
            OpenApiParameter("end", str),
            OpenApiParameter("by", str, enum=list(DIMENSIONS)),
        ],
        responses={200: OpenApiTypes.OBJECT},
    )
    def get(self, request):
        start, end, by = period(request.query_params)
        return Response(
            {
                "start": start,
                "end": end,
                "by": by,
                "rows": measures(start=start, end=end, by=by, agent=request.user),
                "volume_by_hour": volume_by_hour(start=start, end=end, agent=request.user),
            }
        )
