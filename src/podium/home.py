"""PODIUM_HOME is private to the server's user: it holds job inputs and outputs (podium.db), the
keys that sign and encrypt (secret.key, webhook_secret), the operator's key (credentials.json),
bundles and logs. Directories are 0700 and files 0600 whatever the umask the server started with."""

from __future__ import annotations

import contextlib
import os

from podium.config import Settings

#: Files and directories made from now on are for this user alone.
UMASK = 0o077


def make_private(settings: Settings) -> None:
    """Set this process's umask (the workers and builds it starts inherit it), create the home's
    folders, and take back what an older server or a looser umask left open: the home's mode
    alone keeps others out of everything inside it, the files with secrets are closed as well."""
    os.umask(UMASK)
    home = settings.home
    for d in (home, settings.blobs, settings.logs):
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        d.chmod(0o700)
    secret_files = [settings.secret_key_file, settings.webhook_secret_file, settings.credentials]
    secret_files += [home / f"podium.db{suffix}" for suffix in ("", "-wal", "-shm", "-journal")]
    for path in secret_files:
        with contextlib.suppress(FileNotFoundError):
            path.chmod(0o600)
