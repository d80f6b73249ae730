import threading
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import OperationalError, connection, connections
from django.utils import timezone

from accounts import keys, selectors, services
from accounts.models import AccessKey, ApprovalLog, User
from accounts.selectors import AccessKeyRefusal, AccessKeyRefused
from justtrades.tests.factories import UserFactory
from pineaccess.models import ScriptAccess
from pineaccess.tests.factories import PineScriptFactory


def database_text() -> str:
    """Every value in every table of the database, as one string."""
    chunks = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608
            chunks.extend(repr(row) for row in cursor.fetchall())
    return "\n".join(chunks)


def newcomer(name: str = "nina", **fields) -> User:
    fields.setdefault("approval_status", User.ApprovalStatus.PENDING)
    return UserFactory(username=name, tradingview_username=f"{name}_tv", **fields)


# ------------------------------------------------------------------------------------------------ issuing


def test_created_keys_are_stored_only_as_hashes(script):
    issued = services.access_keys_create(count=3, scripts=[script], access_days=30, note="order 1")
    stored = database_text()
    for item in issued:
        canonical = keys.normalize(item.raw_key)
        assert item.raw_key not in stored
        assert canonical not in stored
        assert canonical.lower() not in stored
        assert item.access_key.key_hash == keys.digest(canonical)


def test_created_keys_carry_their_scripts_duration_note_and_approval(script, other_script, staff):
    valid_until = timezone.now() + timedelta(days=7)
    issued = services.access_keys_create(
        count=2,
        scripts=[script, other_script],
        access_days=30,
        note="  webinar  ",
        auto_approve=False,
        valid_until=valid_until,
        created_by=staff,
    )
    for item in issued:
        key = AccessKey.objects.get(pk=item.access_key.pk)
        assert set(key.scripts.all()) == {script, other_script}
        assert (key.access_days, key.note, key.auto_approve, key.created_by) == (30, "webinar", False, staff)
        assert key.valid_until == valid_until
        assert key.state == AccessKey.State.UNUSED
    assert len({item.raw_key for item in issued}) == 2


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"count": 0}, "count"),
        ({"count": services.MAX_KEYS_PER_BATCH + 1}, "count"),
        ({"count": 1, "access_days": 0}, "access_days"),
        ({"count": 1, "valid_until": timezone.now() - timedelta(minutes=1)}, "valid_until"),
    ],
)
def test_keys_are_not_created_from_bad_input(db, options, field):
    with pytest.raises(ValidationError) as error:
        services.access_keys_create(**options)
    assert field in error.value.message_dict
    assert not AccessKey.objects.exists()


def test_keys_cannot_grant_a_switched_off_script(db):
    retired = PineScriptFactory(active=False)
    with pytest.raises(ValidationError, match="switched off"):
        services.access_keys_create(count=1, scripts=[retired])
    assert not AccessKey.objects.exists()


# ------------------------------------------------------------------------------------------------ checking


def test_a_typed_key_is_found_in_any_accepted_spelling(make_key):
    issued = make_key()
    sloppy = issued.raw_key.lower().replace("-", " ").replace("0", "o").replace("1", "l")
    assert selectors.access_key_check(raw_key=sloppy) == issued.access_key


@pytest.mark.parametrize("typed", ["JT-00000-00000-00000-00000", "not a key", ""])
def test_an_unknown_or_malformed_key_is_refused_as_wrong(db, typed):
    with pytest.raises(AccessKeyRefused) as refusal:
        selectors.access_key_check(raw_key=typed)
    assert refusal.value.reason == AccessKeyRefusal.WRONG
    assert "not valid" in refusal.value.message


def test_a_key_is_refused_as_used_revoked_or_expired_and_the_message_says_which(make_key, staff):
    used, revoked, expired = make_key(), make_key(), make_key()
    services.access_key_redeem(access_key_id=used.access_key.pk, user=newcomer())
    services.access_keys_revoke(access_keys=[revoked.access_key], revoked_by=staff)
    AccessKey.objects.filter(pk=expired.access_key.pk).update(
        valid_until=timezone.now() - timedelta(seconds=1)
    )
    for issued, reason, words in [
        (used, AccessKeyRefusal.USED, "already been used"),
        (revoked, AccessKeyRefusal.REVOKED, "revoked"),
        (expired, AccessKeyRefusal.EXPIRED, "expired"),
    ]:
        with pytest.raises(AccessKeyRefused) as refusal:
            selectors.access_key_check(raw_key=issued.raw_key)
        assert refusal.value.reason == reason
        assert words in refusal.value.message


def test_every_state_filter_agrees_with_the_state_of_each_key(make_key, staff):
    unused, used, revoked, expired = make_key(), make_key(), make_key(), make_key()
    services.access_key_redeem(access_key_id=used.access_key.pk, user=newcomer())
    services.access_keys_revoke(access_keys=[revoked.access_key], revoked_by=staff)
    AccessKey.objects.filter(pk=expired.access_key.pk).update(
        valid_until=timezone.now() - timedelta(seconds=1)
    )
    expected = {
        AccessKey.State.UNUSED: unused,
        AccessKey.State.REDEEMED: used,
        AccessKey.State.REVOKED: revoked,
        AccessKey.State.EXPIRED: expired,
    }
    for state, issued in expected.items():
        assert list(AccessKey.objects.in_state(state)) == [issued.access_key]
        assert AccessKey.objects.get(pk=issued.access_key.pk).state == state


def test_only_unused_keys_can_be_revoked(make_key, staff):
    unused, used = make_key(), make_key()
    services.access_key_redeem(access_key_id=used.access_key.pk, user=newcomer())
    assert (
        services.access_keys_revoke(access_keys=[unused.access_key, used.access_key], revoked_by=staff) == 1
    )
    assert services.access_keys_revoke(access_keys=[unused.access_key], revoked_by=staff) == 0
    assert AccessKey.objects.get(pk=unused.access_key.pk).revoked_by == staff
    assert AccessKey.objects.get(pk=used.access_key.pk).state == AccessKey.State.REDEEMED


# --------------------------------------------------------------------------------------------- redeeming


def test_redeeming_a_key_claims_it_grants_its_scripts_for_its_duration_and_approves_the_user(
    make_key, script, other_script
):
    issued = make_key(scripts=[script, other_script], access_days=30)
    user = newcomer()
    before = timezone.now()
    redemption = services.access_key_redeem(access_key_id=issued.access_key.pk, user=user)

    assert redemption.approved
    assert {access.script for access in redemption.accesses} == {script, other_script}
    key = AccessKey.objects.get(pk=issued.access_key.pk)
    assert key.state == AccessKey.State.REDEEMED
    assert key.redeemed_by == user
    assert key.redeemed_at >= before
    rows = ScriptAccess.objects.filter(user=user)
    assert {row.script for row in rows} == {script, other_script}
    for row in rows:
        assert row.status == ScriptAccess.Status.PENDING
        assert row.tradingview_username == "nina_tv"
        assert timedelta(days=29, hours=23) < row.expires_at - before <= timedelta(days=30, seconds=5)
    user.refresh_from_db()
    assert user.approval_status == User.ApprovalStatus.APPROVED
    log = ApprovalLog.objects.get(user=user)
    assert (log.decision, log.decided_by, log.access_key) == ("approved", None, key)
    assert "auto-approve" in log.decided_by_label


def test_a_lifetime_key_grants_access_that_never_expires(make_key, script):
    issued = make_key(scripts=[script])
    user = newcomer()
    services.access_key_redeem(access_key_id=issued.access_key.pk, user=user)
    assert ScriptAccess.objects.get(user=user).expires_at is None


def test_a_key_that_names_no_scripts_grants_the_default_scripts(make_key, default_script, script):
    issued = make_key()
    user = newcomer()
    services.access_key_redeem(access_key_id=issued.access_key.pk, user=user)
    assert [row.script for row in ScriptAccess.objects.filter(user=user)] == [default_script]


def test_a_key_without_scripts_and_without_defaults_still_creates_the_account(make_key):
    user = newcomer()
    services.access_key_redeem(access_key_id=make_key().access_key.pk, user=user)
    assert not ScriptAccess.objects.filter(user=user).exists()
    user.refresh_from_db()
    assert user.is_approved


def test_a_key_without_auto_approve_leaves_the_user_pending(make_key, script):
    issued = make_key(scripts=[script], auto_approve=False)
    user = newcomer()
    services.access_key_redeem(access_key_id=issued.access_key.pk, user=user)
    user.refresh_from_db()
    assert user.approval_status == User.ApprovalStatus.PENDING
    assert not ApprovalLog.objects.exists()
    assert not ScriptAccess.objects.filter(user=user).exists()


def test_scripts_of_a_key_that_needs_approval_are_granted_when_staff_approve_the_user(
    make_key, script, staff
):
    issued = make_key(scripts=[script], auto_approve=False)
    user = newcomer()
    services.access_key_redeem(access_key_id=issued.access_key.pk, user=user)
    assert services.user_approve(user=user, approved_by=staff)
    access = ScriptAccess.objects.get(user=user)
    assert access.script == script
    assert access.status == ScriptAccess.Status.PENDING
    assert not services.user_approve(user=user, approved_by=staff)
    assert ScriptAccess.objects.filter(user=user).count() == 1


def test_the_scripts_are_granted_once_the_transaction_commits(
    make_key, script, pineaccess_tasks, django_capture_on_commit_callbacks
):
    issued = make_key(scripts=[script])
    user = newcomer()
    with django_capture_on_commit_callbacks(execute=True):
        services.access_key_redeem(access_key_id=issued.access_key.pk, user=user)
    row = ScriptAccess.objects.get(user=user)
    assert pineaccess_tasks.committed == [("grant_script_access", row.pk)]


def test_a_used_key_cannot_be_redeemed_again(make_key, script):
    issued = make_key(scripts=[script])
    first, second = newcomer("first"), newcomer("second")
    services.access_key_redeem(access_key_id=issued.access_key.pk, user=first)
    with pytest.raises(AccessKeyRefused) as refusal:
        services.access_key_redeem(access_key_id=issued.access_key.pk, user=second)
    assert refusal.value.reason == AccessKeyRefusal.USED
    assert AccessKey.objects.get(pk=issued.access_key.pk).redeemed_by == first
    assert not ScriptAccess.objects.filter(user=second).exists()


def test_revoked_and_expired_keys_cannot_be_redeemed(make_key, staff):
    revoked, expired = make_key(), make_key()
    services.access_keys_revoke(access_keys=[revoked.access_key], revoked_by=staff)
    AccessKey.objects.filter(pk=expired.access_key.pk).update(valid_until=timezone.now())
    for issued, reason in [(revoked, AccessKeyRefusal.REVOKED), (expired, AccessKeyRefusal.EXPIRED)]:
        with pytest.raises(AccessKeyRefused) as refusal:
            services.access_key_redeem(access_key_id=issued.access_key.pk, user=newcomer(f"n{reason}"))
        assert refusal.value.reason == reason
        assert AccessKey.objects.get(pk=issued.access_key.pk).redeemed_at is None


def test_a_failure_while_granting_leaves_the_key_unused_and_creates_no_account(make_key, script, monkeypatch):
    issued = make_key(scripts=[script])

    def broken_grant(**kwargs):
        raise RuntimeError("grant failed")

    monkeypatch.setattr(services, "script_access_grant", broken_grant)
    with pytest.raises(RuntimeError):
        services.user_register(
            username="nina",
            email="nina@example.com",
            password="a-long-test-password",
            tradingview_username="nina_tv",
            tradingview_verified=True,
            access_key_id=issued.access_key.pk,
        )
    assert AccessKey.objects.get(pk=issued.access_key.pk).state == AccessKey.State.UNUSED
    assert not User.objects.filter(username="nina").exists()


def test_registering_with_a_key_that_was_just_used_creates_no_account(make_key):
    issued = make_key()
    services.access_key_redeem(access_key_id=issued.access_key.pk, user=newcomer("first"))
    with pytest.raises(AccessKeyRefused):
        services.user_register(
            username="second",
            email="second@example.com",
            password="a-long-test-password",
            tradingview_username="second_tv",
            tradingview_verified=True,
            access_key_id=issued.access_key.pk,
        )
    assert not User.objects.filter(username="second").exists()


def test_registering_without_a_key_needs_open_registration(db, settings):
    with pytest.raises(services.RegistrationClosed):
        services.user_register(
            username="nina",
            email="nina@example.com",
            password="a-long-test-password",
            tradingview_username="nina_tv",
            tradingview_verified=False,
        )
    settings.REGISTRATION_OPEN = True
    user = services.user_register(
        username="nina",
        email="nina@example.com",
        password="a-long-test-password",
        tradingview_username="nina_tv",
        tradingview_verified=False,
    )
    assert user.approval_status == User.ApprovalStatus.PENDING


def test_tradingview_usernames_are_unique_in_the_database_in_any_letter_case(approved_user, settings):
    settings.REGISTRATION_OPEN = True
    with pytest.raises(services.RegistrationConflict):
        services.user_register(
            username="copycat",
            email="copycat@example.com",
            password="a-long-test-password",
            tradingview_username="ALICE_TRADES",
            tradingview_verified=True,
        )
    assert not User.objects.filter(username="copycat").exists()


def test_a_key_issued_before_the_secret_key_was_rotated_still_works(make_key, settings):
    issued = make_key()
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "the-rotated-secret-key-for-this-test-0123456789abcdefghijklmnop"
    assert selectors.access_key_check(raw_key=issued.raw_key) == issued.access_key


def lost_the_race_for_the_key(outcome: object) -> bool:
    """A registration that lost: the key was already used, so nothing of it was kept."""
    if isinstance(outcome, AccessKeyRefused):
        return outcome.reason == AccessKeyRefusal.USED
    # SQLite's in-memory test database shares one cache between threads and refuses a second writer at once
    # instead of queueing it behind the busy timeout as the file database in production does.
    return (
        isinstance(outcome, OperationalError)
        and connection.vendor == "sqlite"
        and connection.is_in_memory_db()
        and "locked" in str(outcome)
    )


@pytest.mark.django_db(transaction=True)
def test_twenty_registrations_racing_for_one_key_create_exactly_one_account(script, pineaccess_tasks):
    issued = services.access_keys_create(count=1, scripts=[script], access_days=30)[0]
    racers = 20
    start = threading.Barrier(racers)
    outcomes: list[object] = [None] * racers

    def register(index: int) -> None:
        try:
            start.wait()
            outcomes[index] = services.user_register(
                username=f"racer{index}",
                email=f"racer{index}@example.com",
                password="a-long-test-password",
                tradingview_username=f"Racer_{index}",
                tradingview_verified=True,
                access_key_id=issued.access_key.pk,
            )
        except Exception as error:
            outcomes[index] = error
        finally:
            connections.close_all()

    threads = [threading.Thread(target=register, args=(index,)) for index in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    winners = [outcome for outcome in outcomes if isinstance(outcome, User)]
    losers = [outcome for outcome in outcomes if not isinstance(outcome, User)]
    assert len(winners) == 1, outcomes
    assert all(lost_the_race_for_the_key(outcome) for outcome in losers), losers
    assert list(User.objects.filter(username__startswith="racer")) == winners
    key = AccessKey.objects.get(pk=issued.access_key.pk)
    assert key.redeemed_by == winners[0]
    assert list(ScriptAccess.objects.values_list("user_id", flat=True)) == [winners[0].pk]
    assert len(pineaccess_tasks.committed) == 1
