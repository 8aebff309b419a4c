import django.db.models.deletion
from django.db import migrations, models


def page_type(name, field):
    return migrations.CreateModel(
        name=name,
        fields=[
            (
                "page_ptr",
                models.OneToOneField(
                    auto_created=True,
                    on_delete=django.db.models.deletion.CASCADE,
                    parent_link=True,
                    primary_key=True,
                    serialize=False,
                    to="wagtailcore.page",
                ),
            ),
            field,
        ],
        options={"abstract": False},
        bases=("wagtailcore.page",),
    )


class Migration(migrations.Migration):
    initial = True

    # Any wagtailcore migration that has the page table will do (Wagtail 7 and 8 alike).
    dependencies = [("wagtailcore", "0001_initial")]

    operations = [
        page_type("BlogPage", ("body", models.TextField(blank=True, default=""))),
        page_type("EventPage", ("venue", models.CharField(blank=True, default="", max_length=100))),
    ]
