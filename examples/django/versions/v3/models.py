"""v3: drops legacy_flag (a contract change: v2 selects the column and
breaks on the new schema)."""
from django.db import models


class Note(models.Model):
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True, default="")
    nickname = models.CharField(max_length=100, null=True, blank=True)
