"""The kill switch from the command line and the operator console, and the pipeline's admin pages."""

from __future__ import annotations

from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from trading.models import KillSwitch, Order
from trading.services.killswitches import killswitch_reason, killswitch_set
from trading.tests.execution_support import *  # noqa: F403  fixtures
from trading.tests.execution_support import make_trader, stored_signal
from trading.tests.factories import BrokerAccountFactory, RecorderFactory

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command("killswitch", *args, stdout=out)
    return out.getvalue()


def test_the_command_turns_the_global_switch_on_and_off():
    assert "stopped" in run("on", "--reason", "exchange outage")
    switch = KillSwitch.objects.get(scope="global")
    assert (switch.engaged, switch.reason) == (True, "exchange outage")
    assert killswitch_reason() == (
        "The global kill switch is on (exchange outage): the signal is stored and no order is sent."
    )

    assert "resumed" in run("off")
    assert killswitch_reason() is None
    assert KillSwitch.objects.count() == 1


def test_the_command_stops_one_user(owner):
    output = run("on", "--user", owner.username)

    assert f"of user {owner.username}" in output
    assert KillSwitch.objects.get().user == owner
    assert killswitch_reason(user_id=owner.pk).startswith("The owner's kill switch is on")


def test_the_command_finds_an_account_by_id_or_unique_name(owner, stranger):
    by_id = BrokerAccountFactory(owner=owner, name="Main")
    run("on", "--account", str(by_id.pk))
    unique = BrokerAccountFactory(owner=owner, name="Scalping")
    run("on", "--account", "Scalping")

    assert set(KillSwitch.objects.values_list("broker_account", flat=True)) == {by_id.pk, unique.pk}
    BrokerAccountFactory(owner=stranger, name="Main")
    with pytest.raises(CommandError, match="Several broker accounts are named 'Main'"):
        run("on", "--account", "Main")


def test_the_command_refuses_what_it_cannot_find():
    with pytest.raises(CommandError, match="no user named 'nobody'"):
        run("on", "--user", "nobody")
    with pytest.raises(CommandError, match="no broker account"):
        run("on", "--account", "999")
    assert KillSwitch.objects.count() == 0


def test_the_command_reports_which_switches_are_on(owner):
    run("on", "--user", owner.username, "--reason", "holiday")

    output = run("status")

    assert "holiday" in output
    assert "1 kill switch(es) on." in output


def test_a_switch_is_global_for_one_user_or_for_one_account_never_both(owner):
    account = BrokerAccountFactory(owner=owner)

    with pytest.raises(ValueError, match="not both"):
        killswitch_set(engaged=True, user=owner, account=account)


def test_the_operator_turns_a_switch_on_in_the_admin_through_the_service(client, staff, owner):
    client.force_login(staff)

    response = client.post(
        "/admin/trading/killswitch/add/",
        {"scope": "user", "user": owner.pk, "engaged": "on", "reason": "margin call"},
    )

    assert response.status_code == 302
    switch = KillSwitch.objects.get()
    assert (switch.user, switch.engaged, switch.changed_by) == (owner, True, staff)
    client.post(
        "/admin/trading/killswitch/",
        {"action": "turn_off", "_selected_action": [switch.pk]},
    )
    switch.refresh_from_db()
    assert not switch.engaged


def test_the_admin_refuses_a_switch_whose_target_does_not_match_its_scope(client, staff, owner):
    client.force_login(staff)

    response = client.post(
        "/admin/trading/killswitch/add/", {"scope": "global", "user": owner.pk, "engaged": "on"}
    )

    assert response.status_code == 200  # the form again, with the error
    assert KillSwitch.objects.count() == 0


def test_the_execution_admin_pages_open_for_staff(client, staff, owner, task_queue):
    recorder = RecorderFactory(
        owner=owner,
        symbol="ES",
        tp_targets=[{"value": 4, "trim": None}],
        sl_enabled=True,
        sl_amount=Decimal(4),
    )
    make_trader(recorder)
    signal = stored_signal(recorder)
    task_queue.publish("signal_process", signal.pk)
    task_queue.run()
    client.force_login(staff)

    for model in (
        "signal",
        "order",
        "position",
        "fill",
        "killswitch",
        "lastprice",
        "paperorder",
        "paperposition",
        "paperfill",
    ):
        assert client.get(f"/admin/trading/{model}/").status_code == 200, model
    assert client.get(f"/admin/trading/signal/{signal.pk}/change/").status_code == 200
    assert client.get(f"/admin/trading/order/{Order.objects.first().pk}/change/").status_code == 200
    assert client.get("/admin/trading/signal/add/").status_code == 403
