"""v2: adds a nullable nickname (an expand change: v1 still runs on the
new schema, since it neither reads nor writes the column)."""
from django.db import models


class Note(models.Model):
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True, default="")
    legacy_flag = models.BooleanField(default=False)
    nickname = models.CharField(max_length=100, null=True, blank=True)
