import logging

from django.apps import AppConfig
from django.db import DatabaseError
from django.db.models.signals import post_migrate

logger = logging.getLogger(__name__)


def load_default_scripts(sender, using: str = "default", **kwargs) -> None:
    """Put DEFAULT_PINE_IDS into the catalogue after every migrate (idempotent; names come later)."""
    from pineaccess.services.scripts import pine_script_load_defaults

    try:
        loaded = pine_script_load_defaults()
    except DatabaseError:
        # A partial migrate (for example `migrate accounts 0001`) may run before the tables exist.
        logger.warning("Could not load DEFAULT_PINE_IDS yet: the pineaccess tables are not ready")
        return
    if loaded:
        logger.info("DEFAULT_PINE_IDS: %s scripts in the catalogue", len(loaded))


class PineAccessConfig(AppConfig):
    name = "pineaccess"
    verbose_name = "Pine Script access"

    def ready(self) -> None:
        """Load the default scripts whenever the database is migrated."""
        post_migrate.connect(
            load_default_scripts, sender=self, dispatch_uid="pineaccess_load_default_scripts"
        )
