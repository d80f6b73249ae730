import pytest
from django.core.exceptions import ImproperlyConfigured

from accounts import ratelimit


@pytest.mark.parametrize("value", ["10", "0/60", "10/0", "ten/60", "10/60/5", ""])
def test_a_malformed_rate_setting_is_refused_with_an_example(value):
    with pytest.raises(ImproperlyConfigured, match="10/900"):
        ratelimit.Rate.parse(value, setting="LOGIN_RATE_LIMIT")


def test_a_rate_reads_attempts_per_seconds():
    assert ratelimit.Rate.parse("5/60") == ratelimit.Rate(limit=5, window=60)


def test_the_limits_default_when_the_settings_are_absent(settings):
    del settings.LOGIN_RATE_LIMIT
    del settings.KEY_RATE_LIMIT
    assert ratelimit.rate_for(ratelimit.LOGIN) == ratelimit.Rate(limit=10, window=900)
    assert ratelimit.rate_for(ratelimit.ACCESS_KEY) == ratelimit.Rate(limit=10, window=900)


def test_failures_count_per_identity_and_reset_clears_one(settings):
    settings.LOGIN_RATE_LIMIT = "2/900"
    ratelimit.record_failure(ratelimit.LOGIN, ["ip:1", "account:a"])
    ratelimit.record_failure(ratelimit.LOGIN, ["ip:1", "account:a"])
    assert ratelimit.check(ratelimit.LOGIN, ["account:a"]) is not None
    assert ratelimit.check(ratelimit.LOGIN, ["ip:2"]) is None
    assert ratelimit.check(ratelimit.ACCESS_KEY, ["ip:1"]) is None
    ratelimit.reset(ratelimit.LOGIN, ["account:a"])
    assert ratelimit.check(ratelimit.LOGIN, ["account:a"]) is None
    assert ratelimit.check(ratelimit.LOGIN, ["ip:1"]).minutes >= 1


@pytest.mark.parametrize(
    ("remote", "forwarded", "expected"),
    [
        ("203.0.113.5", "198.51.100.1", "203.0.113.5"),  # not a trusted proxy: the header is ignored
        ("10.0.0.2", "198.51.100.1", "198.51.100.1"),
        ("10.0.0.2", "198.51.100.1, 10.0.0.3", "198.51.100.1"),  # two of our proxies
        ("10.0.0.2", "192.0.2.66, 198.51.100.1", "198.51.100.1"),  # a spoofed first hop is not believed
        ("10.0.0.2", "garbage", "10.0.0.2"),
        ("::ffff:10.0.0.2", "198.51.100.1", "198.51.100.1"),
    ],
)
def test_the_client_address_believes_forwarded_for_only_from_trusted_proxies(
    rf, settings, remote, forwarded, expected
):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    request = rf.get("/", REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=forwarded)
    assert ratelimit.client_ip(request) == expected
