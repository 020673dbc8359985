"""Settings of the notes example, all from the environment.

The database is DATABASE_URL (postgres://user:password@host:5432/name) or,
without it, libpq's PGHOST, PGPORT, PGUSER, PGPASSWORD and PGDATABASE.
SECRET_KEY has no default: a secret never lives in the image or the
repository. deployd sets DEPLOYD_COLOR in the containers it starts. The
version (v1, v2, v3) is the VERSION file the image's build writes.
"""
import os
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlparse

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def _required(name):
    value = os.environ.get(name, "")
    if not value:
        raise ImproperlyConfigured(f"set {name} in the environment")
    return value


def _database():
    engine = "django.db.backends.postgresql"
    url = os.environ.get("DATABASE_URL", "")
    if url:
        u = urlparse(url)
        if u.scheme not in ("postgres", "postgresql"):
            raise ImproperlyConfigured("DATABASE_URL must be a postgres:// URL")
        db = {
            "ENGINE": engine,
            "NAME": unquote(u.path.lstrip("/")),
            "USER": unquote(u.username or ""),
            "PASSWORD": unquote(u.password or ""),
            "HOST": u.hostname or "",
            "PORT": str(u.port or ""),
            "OPTIONS": dict(parse_qsl(u.query)),
        }
    else:
        db = {
            "ENGINE": engine,
            "NAME": os.environ.get("PGDATABASE", "postgres"),
            "USER": os.environ.get("PGUSER", ""),
            "PASSWORD": os.environ.get("PGPASSWORD", ""),
            "HOST": os.environ.get("PGHOST", ""),
            "PORT": os.environ.get("PGPORT", ""),
            "OPTIONS": {},
        }
    # A database that is away must fail /health quickly, not hang it past
    # deployd's probe timeout.
    db["OPTIONS"].setdefault("connect_timeout", 3)
    # One connection per request: a restarted database is picked up by the
    # next request, with nothing stale kept in the workers.
    db["CONN_MAX_AGE"] = 0
    return db


def _version():
    try:
        return (BASE_DIR / "VERSION").read_text().strip()
    except FileNotFoundError:
        return "dev"


SECRET_KEY = _required("SECRET_KEY")
APP_VERSION = _version()
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
# deployd probes the containers by address, and nginx in front passes the
# public host name: list your names here, comma-separated, in production.
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "*").split(",")

INSTALLED_APPS = [
    "django.contrib.staticfiles",
    "notes",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]

ROOT_URLCONF = "notesite.urls"
WSGI_APPLICATION = "notesite.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
    },
]

DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

USE_TZ = True
TIME_ZONE = "UTC"

# Collected into the image at build time (collectstatic --noinput) and
# served by whitenoise from gunicorn.
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_STORAGE = "whitenoise.storage.CompressedManifestStaticFilesStorage"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "INFO"},
}
