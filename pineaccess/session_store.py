"""The TradingView session kept in the database, encrypted, so every process reuses one sign-in."""

from __future__ import annotations

import json
import logging

from django.db import transaction
from django.utils import timezone

from pineaccess.models import AccessLog, Actor, TradingViewSession

logger = logging.getLogger(__name__)


class DatabaseSessionStore:
    """A TradingViewSessionStore backed by the TradingViewSession row; each save is audited as a sign-in."""

    def __init__(self, *, source: str = TradingViewSession.Source.SIGN_IN, saved_by=None, actor: str = ""):
        self.source = source
        self.saved_by = saved_by
        self.actor = actor or (Actor.STAFF if saved_by is not None else Actor.SYSTEM)

    def load(self) -> dict[str, str] | None:
        """Return the saved cookies or None."""
        row = TradingViewSession.objects.filter(pk=TradingViewSession.SINGLETON_ID).first()
        if row is None or not row.cookies:
            return None
        try:
            cookies = json.loads(row.cookies)
        except ValueError:
            logger.error("The saved TradingView session is not valid JSON; ignoring it")
            return None
        if not isinstance(cookies, dict) or not isinstance(cookies.get("sessionid"), str):
            return None
        return {str(name): str(value) for name, value in cookies.items()}

    def save(self, cookies: dict[str, str]) -> None:
        """Replace the saved cookies and note who or what produced them."""
        now = timezone.now()
        with transaction.atomic():
            TradingViewSession.objects.update_or_create(
                pk=TradingViewSession.SINGLETON_ID,
                defaults={
                    "cookies": json.dumps(cookies, sort_keys=True),
                    "source": self.source,
                    "saved_by": self.saved_by,
                    "saved_at": now,
                },
            )
            how = (
                "signed in with the password"
                if self.source == TradingViewSession.Source.SIGN_IN
                else ("pasted session cookies accepted by TradingView")
            )
            AccessLog.objects.create(
                operation=AccessLog.Operation.LOGIN,
                actor=self.actor,
                actor_user=self.saved_by,
                outcome=AccessLog.Outcome.SUCCESS,
                detail=f"{how}; session saved",
            )

    def clear(self) -> None:
        """Forget the saved cookies."""
        TradingViewSession.objects.filter(pk=TradingViewSession.SINGLETON_ID).update(
            cookies="", cleared_at=timezone.now()
        )
