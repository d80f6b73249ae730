"""Publishing Pine Script access tasks from processes that never imported them."""

import os
import subprocess
import sys


def test_a_web_process_that_never_imported_the_tasks_still_finds_them_to_publish():
    """Gunicorn workers import no tasks module: the seam loads them, or grants would never be queued."""
    code = (
        "import django; django.setup()\n"
        "from celery import current_app\n"
        "from pineaccess.services import publish\n"
        "assert publish.GRANT_SCRIPT_ACCESS not in current_app.tasks\n"
        "print(publish.registered_task(publish.GRANT_SCRIPT_ACCESS).name)\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "justtrades.settings", "ENV_FILE": "/nonexistent"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "pineaccess.tasks.grant_script_access"
