"""DEFAULT_PINE_IDS: loaded into the catalogue after every migrate, idempotently, without the network."""

import pytest
from django.core.management import call_command

from pineaccess import selectors
from pineaccess.models import PineScript
from pineaccess.services.scripts import pine_script_load_defaults

pytestmark = pytest.mark.django_db

FIRST = "PUB;" + "1" * 32
SECOND = "PUB;" + "2" * 32


def test_loading_twice_creates_each_script_once_and_skips_bad_ids(settings, caplog):
    settings.DEFAULT_PINE_IDS = [FIRST, " ", "PUB;bad", SECOND, FIRST]
    pine_script_load_defaults()
    loaded = pine_script_load_defaults()
    assert [script.pine_id for script in loaded] == [FIRST, SECOND]
    assert PineScript.objects.count() == 2
    assert "PUB;bad" in caplog.text


def test_an_existing_script_keeps_its_name(settings):
    PineScript.objects.create(pine_id=FIRST, name="Named By Staff")
    settings.DEFAULT_PINE_IDS = [FIRST]
    pine_script_load_defaults()
    assert PineScript.objects.get().name == "Named By Staff"


def test_migrate_loads_the_defaults(settings):
    settings.DEFAULT_PINE_IDS = [FIRST]
    call_command("migrate", "pineaccess", verbosity=0)
    assert PineScript.objects.filter(pine_id=FIRST).exists()


def test_keys_that_name_no_scripts_grant_the_active_defaults(settings):
    settings.DEFAULT_PINE_IDS = [FIRST, SECOND]
    pine_script_load_defaults()
    PineScript.objects.filter(pine_id=SECOND).update(active=False)
    assert [script.pine_id for script in selectors.pine_scripts_default()] == [FIRST]
