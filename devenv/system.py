"""Debian packages: install what is missing (apt-get update first), once."""

from __future__ import annotations

import os
import subprocess

# What the suite drives for real: PostgreSQL (server and client), Dovecot for IMAP, Chromium for
# the chat widget. Java 17 and Maven come with the machine; Kafka itself comes from Maven Central.
PACKAGES = ("postgresql", "dovecot-imapd", "chromium")


def missing(packages: tuple[str, ...] = PACKAGES) -> list[str]:
    absent = []
    for name in packages:
        probe = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", name], capture_output=True, text=True, check=False
        )
        if "install ok installed" not in probe.stdout:
            absent.append(name)
    return absent


def install(packages: tuple[str, ...] = PACKAGES) -> list[str]:
    """Install the missing packages; return their names (empty when nothing was needed)."""
    absent = missing(packages)
    if not absent:
        return []
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    print(f"installing Debian packages: {' '.join(absent)}", flush=True)
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        [*sudo, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *absent],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,  # errors still reach stderr
    )
    return absent


def version(package: str) -> str:
    probe = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True, check=False
    )
    return probe.stdout.strip() or "not installed"
