"""A model hierarchy shaped like Wagtail's pages: multi-table children, a proxy, an abstract base.

No migrations: the test database creates the tables from the models.
"""

from django.db import models


class Stamped(models.Model):
    """Abstract: no table, never a signal's sender."""

    title = models.CharField(max_length=50, default="")

    class Meta:
        abstract = True


class Page(Stamped):
    """The parent a project names in OBSERVABILITY_AUDIT_MODELS."""


class BlogPage(Page):
    """A multi-table child (like every Wagtail page type)."""

    body = models.TextField(default="")


class NewsPage(BlogPage):
    """A grandchild."""

    source = models.CharField(max_length=50, default="")


class DraftPage(Page):
    """A proxy of the parent."""

    class Meta:
        proxy = True


class Unrelated(models.Model):
    name = models.CharField(max_length=50, default="")
