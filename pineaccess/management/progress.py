"""A small text progress bar and shared helpers for the pineaccess commands."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError, OutputWrapper

from pineaccess.models import PineScript


class ProgressBar:
    """Draws `[#####.....] 5/10 label` on one line of stdout, redrawn in place on a terminal."""

    def __init__(self, stdout: OutputWrapper, *, label: str = "", width: int = 30):
        self.stdout = stdout
        self.label = label
        self.width = width
        self.interactive = stdout.isatty()
        self._drawn = False

    def __call__(self, done: int, total: int) -> None:
        """Show progress; safe to call with any numbers."""
        total = max(total, 1)
        done = min(max(done, 0), total)
        filled = round(self.width * done / total)
        line = f"[{'#' * filled}{'.' * (self.width - filled)}] {done}/{total} {self.label}".rstrip()
        if self.interactive:
            self.stdout.write(f"\r{line}", ending="")
            self.stdout.flush()
            self._drawn = True
            if done == total:
                self.finish()
        elif done == total or done == 1 or done % 10 == 0:
            self.stdout.write(line)

    def finish(self) -> None:
        """End the bar's line."""
        if self._drawn:
            self.stdout.write("")
            self._drawn = False


def find_user(text: str):
    """Find a user by username (any case) or email."""
    users = get_user_model().objects
    user = users.filter(username__iexact=text).first() or users.filter(email__iexact=text).first()
    if user is None:
        raise CommandError(f'There is no user "{text}" (give a username or an email address).')
    return user


def find_script(text: str) -> PineScript:
    """Find a script by TradingView id or database id."""
    script = PineScript.objects.filter(pine_id=text.strip()).first()
    if script is None and text.strip().isdigit():
        script = PineScript.objects.filter(pk=int(text)).first()
    if script is None:
        raise CommandError(
            f'There is no script "{text}" in the catalogue. Give its TradingView id (PUB;...) or its number; '
            "add it in the admin first."
        )
    return script
