"""A real IMAP server for the tests: Debian's dovecot with a throwaway configuration, users and
mail store, on a free loopback port. The system's dovecot service is never touched.

Run as root (CI), dovecot drops the IMAP processes to the `mail` user, so the mail store lives
in its own temporary directory that user can reach (pytest's tmp_path is private to root);
run as anyone else, everything runs as that user under tmp_path.
"""

from __future__ import annotations

import grp
import imaplib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

DOVECOT = shutil.which("dovecot") or (
    "/usr/sbin/dovecot" if Path("/usr/sbin/dovecot").exists() else None
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Dovecot:
    def __init__(self, workdir: Path, users: dict[str, str]):
        self.workdir = workdir
        self.users = users
        self.port = _free_port()
        self.host = "127.0.0.1"
        self.process: subprocess.Popen | None = None
        self.root = os.geteuid() == 0
        workdir.mkdir(parents=True, exist_ok=True)
        if self.root:
            mail_user = pwd.getpwnam("mail")
            self.mail_dir = Path(tempfile.mkdtemp(prefix="supportrouter-dovecot-"))
            os.chown(self.mail_dir, mail_user.pw_uid, mail_user.pw_gid)
            self.uid, self.gid = mail_user.pw_uid, mail_user.pw_gid
        else:
            self.mail_dir = workdir / "mail"
            self.mail_dir.mkdir()
            self.uid, self.gid = os.getuid(), os.getgid()
        (workdir / "users").write_text("".join(f"{u}:{{PLAIN}}{p}\n" for u, p in users.items()))
        self.config = workdir / "dovecot.conf"
        self.config.write_text(self._config())

    def _config(self) -> str:
        w = self.workdir
        lines = [
            f"base_dir = {w}/run",
            f"state_dir = {w}/state",
            f"instance_name = supportrouter-test-{self.port}",
            f"log_path = {w}/dovecot.log",
            "protocols = imap",
            "listen = 127.0.0.1",
            "ssl = no",
            "disable_plaintext_auth = no",
            "auth_mechanisms = plain login",
            f"mail_location = maildir:{self.mail_dir}/%u",
            # IDLE notices new mail by inotify, else by a check every 30 s (the default): when a
            # long run has used up the inotify instances, a test waiting 20 s for a push fails.
            "mailbox_idle_check_interval = 1 secs",
            "first_valid_uid = 1",
            "passdb {",
            "  driver = passwd-file",
            f"  args = scheme=PLAIN username_format=%u {w}/users",
            "}",
            "userdb {",
            "  driver = static",
            f"  args = uid={self.uid} gid={self.gid} home={self.mail_dir}/%u",
            "}",
            "service imap-login {",
            "  inet_listener imap {",
            "    address = 127.0.0.1",
            f"    port = {self.port}",
            "  }",
            "  inet_listener imaps {",
            "    port = 0",
            "  }",
        ]
        if not self.root:  # no privileges to drop and no chroot to enter
            lines += ["  chroot ="]
        lines += ["}"]
        if self.root:  # the users file is under root's private tmp_path: auth reads it as root
            lines += ["service auth {\n  user = root\n}"]
        else:
            me = pwd.getpwuid(os.getuid()).pw_name
            group = grp.getgrgid(os.getgid()).gr_name
            lines += [
                f"default_login_user = {me}",
                f"default_internal_user = {me}",
                f"default_internal_group = {group}",
                "service anvil {\n  chroot =\n}",
            ]
        return "\n".join(lines) + "\n"

    # --- the server ---------------------------------------------------------------------------

    def start(self, timeout: float = 15) -> None:
        assert self.process is None, "already running"
        self.process = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group: stop() ends the whole instance
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = (
                    self.process.stderr.read().decode(errors="replace")
                    if self.process.stderr
                    else ""
                )
                self.process = None
                raise RuntimeError(f"dovecot exited at start: {err}\n{self.log()}")
            try:
                with imaplib.IMAP4(self.host, self.port, timeout=2) as imap:
                    imap.noop()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"dovecot did not listen on {self.port} within {timeout}s\n{self.log()}")

    def stop(self) -> None:
        """Stop the instance as a crash or a restart would: its IMAP processes go too, so
        connected clients see the connection drop (the master alone leaves them serving)."""
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(process.pid, sig)  # the group this fixture started, nothing else
            except ProcessLookupError:
                break
            time.sleep(0.2)
        if process.stderr:
            process.stderr.close()

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        path = self.workdir / "dovecot.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def cleanup(self) -> None:
        self.stop()
        if self.root:
            shutil.rmtree(self.mail_dir, ignore_errors=True)

    # --- a mail client (imaplib, blocking: call through asyncio.to_thread from a test) --------

    def connect(self, user: str) -> imaplib.IMAP4:
        imap = imaplib.IMAP4(self.host, self.port, timeout=10)
        imap.login(user, self.users[user])
        return imap

    def append(self, user: str, raw: bytes, mailbox: str = "INBOX", flags: str = "") -> None:
        with self.connect(user) as imap:
            if mailbox != "INBOX":
                imap.create(mailbox)
            status, detail = imap.append(mailbox, flags or None, None, raw)
            assert status == "OK", detail

    def messages(self, user: str, mailbox: str = "INBOX") -> list[tuple[str, bytes]]:
        """(flags, raw) of every message in a mailbox, oldest first, without marking them seen."""
        with self.connect(user) as imap:
            imap.select(mailbox, readonly=True)
            _, data = imap.uid("SEARCH", None, "ALL")
            out = []
            for uid in data[0].split():
                _, fetched = imap.uid("FETCH", uid, "(FLAGS BODY.PEEK[])")
                # While the router's poller changes flags, the server may slip an untagged
                # "* n FETCH (FLAGS ...)" line (plain bytes) in before the literal we asked for.
                head, raw = next(part for part in fetched if isinstance(part, tuple))
                out.append((head.decode(errors="replace"), raw))
            return out


@pytest.fixture(name="dovecot")
def dovecot_fixture(tmp_path) -> Iterator[Dovecot]:
    """A running dovecot with two users: `support` (the mailbox the router polls) and
    `customer` (where replies the relay delivers end up)."""
    if DOVECOT is None:
        reason = "dovecot is not installed (apt-get install dovecot-imapd; `make test` does it)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        print(f"SKIP: {reason}")
        pytest.skip(reason)
    server = Dovecot(
        tmp_path / "dovecot", {"support": "support-secret", "customer": "customer-secret"}
    )
    try:
        server.start()
        yield server
    finally:
        server.cleanup()
