"""The ceiling view: read the body, commit one row with one self-committing INSERT, answer JSON."""

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

TABLE = "bench_ceiling"
CREATE_TABLE = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} "
    "(id bigserial PRIMARY KEY, received_at timestamptz NOT NULL, body text NOT NULL)"
)


@csrf_exempt
def ceiling(request: HttpRequest, token: str) -> JsonResponse:
    """What any alert endpoint must do at least: take the body and make it durable."""
    body = request.body.decode("utf-8", "replace")
    with connection.cursor() as cursor:
        # Autocommit: the lone INSERT commits by itself, as the webhook's signal INSERT does.
        cursor.execute(f"INSERT INTO {TABLE} (received_at, body) VALUES (now(), %s) RETURNING id", [body])  # noqa: S608
        row_id = cursor.fetchone()[0]
    return JsonResponse({"status": "accepted", "row": row_id})
