"""The route label of a served page: its page type (``page:app_label.model``), not ``/<path>``."""

from wagtail import hooks

from django_observability import refine_route


@hooks.register("before_serve_page")
def route_by_page_type(page, request, serve_args, serve_kwargs):
    refine_route(request, f"page:{page.specific_class._meta.label_lower}")
