"""Two page types: multi-table children of ``wagtailcore.Page``, as every Wagtail page type is."""

from django.db import models
from django.http import HttpResponse
from wagtail.models import Page


class BlogPage(Page):
    body = models.TextField(blank=True, default="")

    def serve(self, request, *args, **kwargs):
        return HttpResponse(f"blog: {self.title}")


class EventPage(Page):
    venue = models.CharField(max_length=100, blank=True, default="")

    def serve(self, request, *args, **kwargs):
        return HttpResponse(f"event: {self.title}")
