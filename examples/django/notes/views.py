"""The notes app's pages. They use only the fields the running version's
model declares, so one file serves v1, v2 and v3."""
import json
import os

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods

from .models import Note

VERSION = settings.APP_VERSION


def _color():
    return os.environ.get("DEPLOYD_COLOR", "")


def _fields():
    return [f.name for f in Note._meta.concrete_fields]


def _as_dict(note):
    return {name: getattr(note, name) for name in _fields()}


@require_GET
def health(request):
    """200 when PostgreSQL answers and the notes table has every column
    this version's model reads; 503 with the reason otherwise."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        # Selects every column of the model: a schema this version cannot
        # run on (a column dropped under it) fails here, not in a user's
        # request.
        list(Note.objects.all()[:1])
    except DatabaseError as e:
        lines = str(e).strip().splitlines()
        reason = f"{type(e).__name__}: {lines[0] if lines else 'no detail'}"
        return JsonResponse(
            {"status": "unavailable", "version": VERSION, "reason": reason[:200]},
            status=503,
        )
    return JsonResponse({"status": "ok", "version": VERSION, "color": _color()})


@require_GET
def index(request):
    notes = [_as_dict(n) for n in Note.objects.order_by("-id")[:50]]
    return render(
        request,
        "notes/index.html",
        {"version": VERSION, "color": _color(), "fields": _fields(), "notes": notes},
    )


@csrf_exempt
@require_http_methods(["GET", "POST"])
def notes(request):
    """GET lists the latest notes as JSON; POST creates one from a JSON
    object (title required; any other field this version knows)."""
    if request.method == "GET":
        return JsonResponse({"version": VERSION, "notes": [_as_dict(n) for n in Note.objects.order_by("-id")[:50]]})
    try:
        data = json.loads(request.body or b"{}")
    except ValueError:
        return JsonResponse({"error": "body is not JSON"}, status=400)
    if not isinstance(data, dict) or not str(data.get("title", "")).strip():
        return JsonResponse({"error": "a JSON object with a title is needed"}, status=400)
    known = set(_fields()) - {"id"}
    note = Note.objects.create(**{k: v for k, v in data.items() if k in known})
    return JsonResponse(_as_dict(note), status=201)
