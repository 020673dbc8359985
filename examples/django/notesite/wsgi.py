"""WSGI entry point, served by gunicorn (notesite.wsgi:application)."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "notesite.settings")
application = get_wsgi_application()
