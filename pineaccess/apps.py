from django.apps import AppConfig


class PineAccessConfig(AppConfig):
    name = "pineaccess"
    verbose_name = "Pine Script access"
