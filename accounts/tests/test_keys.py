import re
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accounts import keys

KEY_FORMAT = re.compile(
    r"^JT-[0-9A-HJKMNP-TV-Z]{5}-[0-9A-HJKMNP-TV-Z]{5}-[0-9A-HJKMNP-TV-Z]{5}-[0-9A-HJKMNP-TV-Z]{5}$"
)
canonical_keys = st.text(alphabet=keys.ALPHABET, min_size=20, max_size=20)


def test_a_new_key_reads_jt_then_four_groups_of_five_crockford_characters():
    for _ in range(200):
        assert KEY_FORMAT.match(keys.generate())


def test_a_key_carries_at_least_100_random_bits():
    assert keys.KEY_BITS >= 100
    assert len(keys.ALPHABET) ** keys.KEY_LENGTH == 2**keys.KEY_BITS


def test_every_character_is_equally_likely_in_every_position():
    samples = [keys.normalize(keys.generate()) for _ in range(4000)]
    assert len(set(samples)) == len(samples)
    for position in range(keys.KEY_LENGTH):
        counts = Counter(sample[position] for sample in samples)
        # 125 expected per symbol; a generator stuck on some bits would leave symbols out or pile them up.
        assert set(counts) == set(keys.ALPHABET)
        assert max(counts.values()) < 200


@given(canonical_keys)
def test_a_key_is_accepted_in_any_case_with_spaces_dashes_and_without_its_prefix(canonical):
    shown = keys.display(canonical)
    assert keys.normalize(shown) == canonical
    assert keys.normalize(shown.lower()) == canonical
    assert keys.normalize(shown.replace("-", " ")) == canonical
    assert keys.normalize(f"  {shown[3:].replace('-', '')}  ") == canonical
    assert keys.normalize(" - ".join(canonical)) == canonical


@given(canonical_keys)
def test_letters_that_look_like_digits_read_as_those_digits(canonical):
    typed = canonical.replace("0", "O").replace("1", "l")
    assert keys.normalize(typed) == canonical
    assert keys.normalize(canonical.replace("1", "I")) == canonical


@pytest.mark.parametrize(
    "typed",
    [
        "",
        "JT",
        "JT-ABCDE-FGHJK-MNPQR",
        "JT-ABCDE-FGHJK-MNPQR-STVWXY",
        "JT-ABCDE-FGHJK-MNPQR-STVWU",
        "JT-ABCDE-FGHJK-MNPQR-STVW!",
    ],
)
def test_text_that_cannot_be_a_key_normalises_to_nothing(typed):
    assert keys.normalize(typed) is None


def test_the_stored_digest_depends_on_the_secret_key_and_never_contains_the_key(settings):
    canonical = keys.normalize(keys.generate())
    first = keys.digest(canonical)
    assert len(first) == 64
    assert canonical not in first
    assert keys.digest(canonical) == first
    settings.SECRET_KEY = "another-secret-key-for-this-test-0123456789abcdefghijklmnopqrstu"
    assert keys.digest(canonical) != first


def test_digests_under_fallback_secrets_are_candidates_so_rotating_the_secret_keeps_keys(settings):
    canonical = keys.normalize(keys.generate())
    old = keys.digest(canonical)
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "the-rotated-secret-key-for-this-test-0123456789abcdefghijklmnop"
    assert old in keys.candidate_digests(canonical)
    assert keys.digest(canonical) in keys.candidate_digests(canonical)
