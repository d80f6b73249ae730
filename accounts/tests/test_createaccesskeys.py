import io
import re
import stat

import pytest
from django.core.management import CommandError, call_command

from accounts import keys
from accounts.models import AccessKey

RAW_KEY = re.compile(r"JT-[0-9A-Z]{5}-[0-9A-Z]{5}-[0-9A-Z]{5}-[0-9A-Z]{5}")


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("createaccesskeys", *args, stdout=out)
    return out.getvalue()


def test_the_command_prints_each_new_key_once_and_a_summary(script):
    output = run("--count", "3", "--scripts", script.pine_id, "--days", "30", "--note", "launch")
    printed = RAW_KEY.findall(output)
    assert len(printed) == len(set(printed)) == 3
    assert output.strip().splitlines()[-1].startswith("Created 3 access keys")
    assert "30 days" in output
    assert script.pine_id in output
    for raw in printed:
        key = AccessKey.objects.get(key_hash=keys.digest(keys.normalize(raw)))
        assert (key.access_days, key.note, key.auto_approve) == (30, "launch", True)
        assert list(key.scripts.all()) == [script]


def test_the_command_defaults_to_lifetime_auto_approving_keys_for_the_default_scripts(db):
    output = run("--count", "1")
    key = AccessKey.objects.get()
    assert (key.access_days, key.auto_approve, key.scripts.count()) == (None, True, 0)
    assert "lifetime" in output
    assert "default scripts" in output


def test_no_auto_approve_and_valid_until_are_kept(db):
    run("--count", "1", "--no-auto-approve", "--valid-until", "2999-12-31")
    key = AccessKey.objects.get()
    assert not key.auto_approve
    assert key.valid_until.year == 2999


def test_the_csv_file_holds_the_keys_readable_by_its_owner_only(script, tmp_path):
    target = tmp_path / "keys.csv"
    output = run("--count", "2", "--scripts", script.pine_id, "--csv", str(target))
    assert not RAW_KEY.search(output)
    assert str(target) in output
    lines = target.read_text().splitlines()
    assert lines[0] == "id,key,note,scripts,days,auto_approve,valid_until"
    assert len(lines) == 3
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    for line in lines[1:]:
        key_id, raw = line.split(",")[:2]
        assert AccessKey.objects.get(pk=key_id).key_hash == keys.digest(keys.normalize(raw))


def test_an_existing_csv_file_is_never_overwritten(db, tmp_path):
    target = tmp_path / "keys.csv"
    target.write_text("earlier keys\n")
    with pytest.raises(CommandError, match="already exists"):
        run("--count", "1", "--csv", str(target))
    assert target.read_text() == "earlier keys\n"
    assert not AccessKey.objects.exists()


def test_an_unknown_script_id_stops_the_command_with_a_clear_error(script):
    with pytest.raises(CommandError, match=r"Unknown script id: PUB;0{32}"):
        run("--count", "1", "--scripts", f"{script.pine_id},PUB;{'0' * 32}")
    assert not AccessKey.objects.exists()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--count", "0"], "between 1 and"),
        (["--count", "1", "--days", "0"], "between 1 and"),
        (["--count", "1", "--valid-until", "soon"], "is not a date"),
        (["--count", "1", "--valid-until", "2001-01-01"], "already past"),
    ],
)
def test_bad_input_stops_the_command_and_creates_nothing(db, tmp_path, args, words):
    target = tmp_path / "keys.csv"
    with pytest.raises(CommandError, match=words):
        run(*args, "--csv", str(target))
    assert not AccessKey.objects.exists()
    assert not target.exists()
