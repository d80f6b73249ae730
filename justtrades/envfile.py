"""Write a `.env` with freshly generated secrets on first run (used by `make run`); never overwrite one."""

import secrets
import sys
from pathlib import Path

from cryptography.fernet import Fernet

TEMPLATE = """# Written by `make run` on first start. Secrets here are random and local to this machine:
# keep the file private, and keep FIELD_ENCRYPTION_KEYS as long as the database lives
# (stored credentials need it).
SECRET_KEY={secret_key}
FIELD_ENCRYPTION_KEYS={field_key}
DEBUG=false
"""


def write_env_file(path: Path) -> bool:
    """Create the file with new secrets unless it exists; return whether it was created."""
    if path.exists():
        return False
    path.write_text(
        TEMPLATE.format(secret_key=secrets.token_urlsafe(50), field_key=Fernet.generate_key().decode())
    )
    path.chmod(0o600)
    return True


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else ".env")
    if write_env_file(target):
        print(f"Created {target} with new random secrets.")
