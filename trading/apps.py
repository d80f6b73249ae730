from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class TradingConfig(AppConfig):
    name = "trading"
    verbose_name = "Trading"

    def ready(self) -> None:
        from trading import caches
        from trading.models import ContractSpec

        # Every process drops its copies of the contract specifications when an operator changes one.
        for signal in (post_save, post_delete):
            signal.connect(lambda **kwargs: caches.changed(), sender=ContractSpec, weak=False)
