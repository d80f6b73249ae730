"""Reads about users and access keys that views, admin, API and services share."""

from __future__ import annotations

from enum import StrEnum

from django.conf import settings
from django.db.models import QuerySet
from rest_framework.authtoken.models import Token

from accounts import keys
from accounts.models import AccessKey, User
from pineaccess.models import PineScript, ScriptAccess

# Access in these states still exists on TradingView (or may), so the username it was granted to must stay.
LIVE_ACCESS_STATUSES = (
    ScriptAccess.Status.PENDING,
    ScriptAccess.Status.ACTIVE,
    ScriptAccess.Status.FAILED,
    ScriptAccess.Status.REMOVING,
)


class AccessKeyRefusal(StrEnum):
    """Why a key cannot be redeemed; each has its own message and nothing more is revealed."""

    WRONG = "wrong"
    USED = "used"
    REVOKED = "revoked"
    EXPIRED = "expired"

    @property
    def message(self) -> str:
        """The sentence shown to the person who typed the key."""
        return _REFUSAL_MESSAGES[self]


_REFUSAL_MESSAGES = {
    AccessKeyRefusal.WRONG: (
        f"That access key is not valid. Check it against the key you were given (it looks like "
        f"{keys.EXAMPLE}) and try again."
    ),
    AccessKeyRefusal.USED: (
        "That access key has already been used: each key works only once. If you registered with it, log in."
    ),
    AccessKeyRefusal.REVOKED: "That access key has been revoked. Ask whoever gave it to you for a new one.",
    AccessKeyRefusal.EXPIRED: "That access key has expired. Ask whoever gave it to you for a new one.",
}


class AccessKeyRefused(Exception):
    """A key that cannot be redeemed, with the reason."""

    def __init__(self, reason: AccessKeyRefusal):
        super().__init__(reason.message)
        self.reason = reason
        self.message = reason.message


def access_key_find(*, raw_key: str) -> AccessKey | None:
    """Return the key a person typed (in any of the accepted spellings), or None."""
    canonical = keys.normalize(raw_key)
    if canonical is None:
        return None
    return AccessKey.objects.filter(key_hash__in=keys.candidate_digests(canonical)).first()


def access_key_refusal(*, access_key: AccessKey | None) -> AccessKeyRefusal | None:
    """Why a key cannot be redeemed now, or None when it can."""
    if access_key is None:
        return AccessKeyRefusal.WRONG
    return {
        AccessKey.State.REDEEMED: AccessKeyRefusal.USED,
        AccessKey.State.REVOKED: AccessKeyRefusal.REVOKED,
        AccessKey.State.EXPIRED: AccessKeyRefusal.EXPIRED,
    }.get(access_key.state)


def access_key_check(*, raw_key: str) -> AccessKey:
    """Return the redeemable key a person typed, or raise AccessKeyRefused saying why not."""
    access_key = access_key_find(raw_key=raw_key)
    refusal = access_key_refusal(access_key=access_key)
    if refusal is not None:
        raise AccessKeyRefused(refusal)
    return access_key


def access_key_usable(*, access_key_id: int) -> AccessKey:
    """Return a key validated earlier (its id kept in the session) if it is still redeemable."""
    access_key = AccessKey.objects.filter(pk=access_key_id).first()
    refusal = access_key_refusal(access_key=access_key)
    if refusal is not None:
        raise AccessKeyRefused(refusal)
    return access_key


def access_key_list() -> QuerySet[AccessKey]:
    """Every key with what its list rows show, in a fixed number of queries."""
    return AccessKey.objects.select_related("created_by", "redeemed_by", "revoked_by").prefetch_related(
        "scripts"
    )


def access_key_scripts_to_grant(*, access_key: AccessKey) -> list[PineScript]:
    """The active scripts a key grants: its own, or the default scripts when it names none."""
    named = list(access_key.scripts.all())
    if named:
        return [script for script in named if script.active]
    return list(default_scripts())


def default_scripts() -> QuerySet[PineScript]:
    """The active scripts of DEFAULT_PINE_IDS, granted by keys that name no scripts."""
    return PineScript.objects.filter(pine_id__in=getattr(settings, "DEFAULT_PINE_IDS", []), active=True)


def user_has_live_script_access(*, user: User) -> bool:
    """Whether any of the user's script access is not yet fully removed from TradingView."""
    return ScriptAccess.objects.filter(user=user, status__in=LIVE_ACCESS_STATUSES).exists()


def tradingview_username_taken(*, tradingview_username: str, exclude_user: User | None = None) -> bool:
    """Whether another user holds this TradingView username, in any letter case."""
    holders = User.objects.filter(tradingview_username__iexact=tradingview_username.strip())
    if exclude_user is not None and exclude_user.pk is not None:
        holders = holders.exclude(pk=exclude_user.pk)
    return holders.exists()


def user_redeemed_keys(*, user: User) -> QuerySet[AccessKey]:
    """The keys a user redeemed, newest first, with their scripts."""
    return AccessKey.objects.filter(redeemed_by=user).prefetch_related("scripts").order_by("-redeemed_at")


def user_api_token(*, user: User) -> Token | None:
    """The user's API token, or None before they create one."""
    return Token.objects.filter(user=user).first()
