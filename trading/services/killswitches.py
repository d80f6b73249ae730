"""Kill switches: global, per user and per broker account; what they block."""

from __future__ import annotations

import logging

from django.db import IntegrityError, transaction
from django.db.models import Q

from trading.models import (
    BrokerAccount,
    KillSwitch,
)

logger = logging.getLogger(__name__)


def killswitch_set(
    *,
    engaged: bool,
    user=None,
    account: BrokerAccount | None = None,
    changed_by=None,
    reason: str = "",
) -> KillSwitch:
    """Turn a kill switch on or off: global (no user, no account), for one user, or for one broker account."""
    if user is not None and account is not None:
        raise ValueError(
            "A kill switch is global, for one user or for one account: give a user or an account, not both."
        )
    if account is not None:
        scope, target = KillSwitch.Scope.ACCOUNT, {"broker_account": account}
    elif user is not None:
        scope, target = KillSwitch.Scope.USER, {"user": user}
    else:
        scope, target = KillSwitch.Scope.GLOBAL, {}
    values = {"engaged": engaged, "reason": (reason or "")[:200], "changed_by": changed_by}
    with transaction.atomic():
        try:
            with transaction.atomic():
                switch, created = KillSwitch.objects.get_or_create(scope=scope, **target, defaults=values)
        except IntegrityError:
            switch, created = KillSwitch.objects.get(scope=scope, **target), False
        if not created:
            for name, value in values.items():
                setattr(switch, name, value)
            switch.save()
    logger.warning(
        "Kill switch %s (%s) turned %s by user %s",
        switch.pk,
        scope,
        "on" if engaged else "off",
        getattr(changed_by, "pk", None),
    )
    return switch


def engaged_switches(*, user_id: int | None = None, account_id: int | None = None) -> dict[str, str]:
    """Return {scope: reason} of the switches that are on for everyone, this user or this account."""
    scopes = Q(scope=KillSwitch.Scope.GLOBAL)
    if user_id is not None:
        scopes |= Q(scope=KillSwitch.Scope.USER, user_id=user_id)
    if account_id is not None:
        scopes |= Q(scope=KillSwitch.Scope.ACCOUNT, broker_account_id=account_id)
    return dict(KillSwitch.objects.filter(scopes, engaged=True).values_list("scope", "reason"))


def blocking_reason(engaged: dict[str, str]) -> str | None:
    for scope, label in (
        (KillSwitch.Scope.GLOBAL, "The global kill switch is on"),
        (KillSwitch.Scope.USER, "The owner's kill switch is on"),
        (KillSwitch.Scope.ACCOUNT, "The kill switch of this broker account is on"),
    ):
        if scope in engaged:
            why = f" ({engaged[scope]})" if engaged[scope] else ""
            return f"{label}{why}: the signal is stored and no order is sent."
    return None


def killswitch_reason(*, user_id: int | None = None, account_id: int | None = None) -> str | None:
    """Return why orders are blocked for this user or account (the broadest switch that is on), else None."""
    return blocking_reason(engaged_switches(user_id=user_id, account_id=account_id))
