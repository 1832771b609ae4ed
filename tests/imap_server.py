"""A real IMAP server for the tests: Debian's Dovecot on loopback, from a private configuration.

`Dovecot()` writes a configuration into a fresh temporary folder, starts `dovecot -c FILE` (which
forks into the background), waits for the port, and `stop()` runs `doveadm -c FILE stop` and removes
the folder. Any user name logs in with the password `secret`; each user's mail is a Maildir in
`TMP/mail/USER`, owned by nobody/nogroup. Plain IMAP (no TLS) on 127.0.0.1 only.

`DropProxy` sits between a client and the server and cuts the connection on purpose: before the
Nth client command containing a word (`drop_before=("FETCH", 2)`), or once the server has sent a
number of bytes (`drop_after_bytes=...`).

Both need root (Dovecot switches to nobody and its own users); `available()` says why not when they
cannot run, for a clean pytest.skip.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

PASSWORD = "secret"


def available() -> str | None:
    """None when Dovecot can run here, else the reason to skip."""
    if shutil.which("dovecot") is None or shutil.which("doveadm") is None:
        return "dovecot is not installed (apt-get install dovecot-imapd)"
    if os.geteuid() != 0:
        return "the Dovecot tests run as root (Dovecot switches to nobody)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _binary(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if found is None:
        raise RuntimeError(f"{name} is not installed")
    return found


CONFIG = """\
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
base_dir = {tmp}/run
state_dir = {tmp}/state
log_path = {tmp}/dovecot.log
info_log_path = {tmp}/dovecot.log
mail_location = maildir:{tmp}/mail/%u
mail_uid = nobody
mail_gid = nogroup
first_valid_uid = 1
protocol imap {{
  mail_max_userip_connections = 50
}}
namespace inbox {{
  inbox = yes
  separator = /
}}
passdb {{
  driver = static
  args = password={password}
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={tmp}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = 0
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0): look at its state.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return False


class Dovecot:
    def __init__(self) -> None:
        reason = available()
        if reason:
            raise RuntimeError(reason)
        # Not under pytest's tmp_path: that is 0700 root, and the mail processes run as nobody.
        self.tmp = Path(tempfile.mkdtemp(prefix="newsletter-dovecot-"))
        self.tmp.chmod(0o755)
        self.mail = self.tmp / "mail"
        self.mail.mkdir()
        shutil.chown(self.mail, "nobody", "nogroup")
        self.port = free_port()
        self.config = self.tmp / "dovecot.conf"
        self.config.write_text(CONFIG.format(tmp=self.tmp, port=self.port, password=PASSWORD))
        self.started = False

    def start(self, timeout: float = 15) -> Dovecot:
        # The daemon keeps its standard streams: a file, not a pipe we would wait on for ever.
        with open(self.tmp / "start.log", "wb") as out:
            run = subprocess.run(
                [_binary("dovecot"), "-c", str(self.config)],
                check=False,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
            )
        if run.returncode != 0:
            output = (self.tmp / "start.log").read_text(errors="replace")
            self.stop()
            raise RuntimeError(f"dovecot would not start: {output.strip()}")
        self.started = True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(100).startswith(b"* OK"):
                        return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"dovecot did not answer on port {self.port}\n{self.log()}")

    def log(self) -> str:
        path = self.tmp / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def maildir(self, user: str) -> Path:
        return self.mail / user

    def stop(self) -> None:
        if self.started:
            self.started = False
            pid_file = self.tmp / "run" / "master.pid"
            pid = int(pid_file.read_text().strip()) if pid_file.exists() else None
            subprocess.run(
                [_binary("doveadm"), "-c", str(self.config), "stop"],
                check=False,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=30,
            )
            # doveadm stop returns at once: wait for the master (the process we started) to exit.
            deadline = time.monotonic() + 15
            while pid is not None and time.monotonic() < deadline and _alive(pid):
                time.sleep(0.05)
            if pid is not None and _alive(pid):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> Dovecot:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class DropProxy:
    """A loopback TCP proxy to `port` that drops the connection on purpose (once: later connections pass)."""

    def __init__(
        self, port: int, *, drop_before: tuple[str, int] | None = None, drop_after_bytes: int | None = None
    ) -> None:
        self.target = port
        self.drop_before = drop_before
        self.drop_after_bytes = drop_after_bytes
        self.dropped = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.closing = False
        self.threads: list[threading.Thread] = []
        self.sockets: list[socket.socket] = []
        self._accept = threading.Thread(target=self._serve, daemon=True)
        self._accept.start()

    def _serve(self) -> None:
        while not self.closing:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target))
            self.sockets += [client, server]
            armed = not self.dropped.is_set()
            for args in ((client, server, "up", armed), (server, client, "down", armed)):
                thread = threading.Thread(target=self._pump, args=args, daemon=True)
                thread.start()
                self.threads.append(thread)

    def _pump(self, src: socket.socket, dst: socket.socket, direction: str, armed: bool) -> None:
        seen = 0
        count = 0
        pending = b""
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if armed and direction == "up" and self.drop_before:
                    word, nth = self.drop_before
                    pending += data
                    lines = pending.split(b"\r\n")
                    pending = lines.pop()
                    for line in lines:
                        if word.encode() in line.upper():
                            count += 1
                            if count >= nth:
                                self._drop(src, dst)
                                return
                        dst.sendall(line + b"\r\n")
                    continue
                if armed and direction == "down" and self.drop_after_bytes is not None:
                    room = self.drop_after_bytes - seen
                    if len(data) >= room:
                        dst.sendall(data[:room])
                        self._drop(src, dst)
                        return
                    seen += len(data)
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def _drop(self, *sockets: socket.socket) -> None:
        self.dropped.set()
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self.closing = True
        self.listener.close()
        for s in self.sockets:
            with contextlib.suppress(OSError):
                s.close()
        for thread in self.threads:
            thread.join(timeout=2)

    def __enter__(self) -> DropProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
