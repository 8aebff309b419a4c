from django.apps import AppConfig


class AuditModelsConfig(AppConfig):
    name = "tests.audit_models"
    label = "audit_models"
    default_auto_field = "django.db.models.AutoField"
