"""v1: the notes table as first shipped."""
from django.db import models


class Note(models.Model):
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True, default="")
    legacy_flag = models.BooleanField(default=False)
