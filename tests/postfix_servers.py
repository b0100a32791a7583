"""Postfix's own servers on loopback, for the tests and benchmarks that need a real MTA's SMTP.

    with SmtpSink() as sink: ...                       # Postfix's C test server: accepts and forgets
    with SmtpSink("-p", dump_to=folder) as sink: ...   # without PIPELINING; each transaction written to a file
    with PostfixServer(tmp_path, mailboxes=["ana"]) as postfix: ...   # a private Postfix instance

Both listen on an ephemeral port (127.0.0.1:0); the port the system chose is read back from /proc.
Debian's `postfix` package brings both; `SMTP_SINK` and `POSTFIX` are None when it is not installed,
and `skip_without_*` are the pytest marks for the tests that need them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

SBIN = "/usr/sbin:/usr/local/sbin:" + os.environ.get("PATH", "")
SMTP_SINK = shutil.which("smtp-sink", path=SBIN)
POSTFIX = shutil.which("postfix", path=SBIN)
HOSTNAME = "postfix.test.localhost"
START_TIMEOUT = 30.0
# Debian's master.cf, cut to what delivery needs, nothing chrooted; port 0: the system picks,
# listening_port() reads it back.
MASTER_CF = """\
127.0.0.1:0 inet n - n - - smtpd
pickup    unix  n - n 60   1 pickup
cleanup   unix  n - n -    0 cleanup
qmgr      unix  n - n 300  1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n -    - trivial-rewrite
bounce    unix  - - n -    0 bounce
defer     unix  - - n -    0 bounce
trace     unix  - - n -    0 bounce
verify    unix  - - n -    1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -    - proxymap
smtp      unix  - - n -    - smtp
relay     unix  - - n -    - smtp
showq     unix  n - n -    - showq
error     unix  - - n -    - error
retry     unix  - - n -    - error
discard   unix  - - n -    - discard
local     unix  - n n -    - local
virtual   unix  - n n -    - virtual
anvil     unix  - - n -    1 anvil
scache    unix  - - n -    1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


def listening_port(pid: int) -> int:
    """The TCP port a process listens on, from its socket descriptors and /proc/net/tcp (Linux only)."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        inodes = set()
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                return int(fields[1].rsplit(":", 1)[1], 16)
        time.sleep(0.02)
    raise RuntimeError(f"process {pid} is not listening on any TCP port")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of one process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class SmtpSink:
    """`smtp-sink [options] 127.0.0.1:0 backlog` in its own process; `options` as in smtp-sink(1).

    `dump` keeps every transaction as one file (`-d`), in a folder of its own under /tmp that it can still
    write to after dropping to nobody, removed when it stops; read them with dumps() before that.
    """

    def __init__(self, *options: str, dump: bool = False, backlog: int = 256) -> None:
        if SMTP_SINK is None:
            raise RuntimeError("smtp-sink is not installed (Debian package postfix)")
        self._counters = tempfile.TemporaryFile()  # -c: its running counters, for accepted()
        command = [SMTP_SINK, "-c", "-h", HOSTNAME, *options]
        if os.geteuid() == 0:
            command += ["-u", "nobody"]  # it refuses to run as root otherwise
        self.dump_to: Path | None = None
        if dump:
            self.dump_to = Path(tempfile.mkdtemp(prefix="newsletter-smtp-sink-"))
            self.dump_to.chmod(0o777)
            command += ["-d", f"{self.dump_to}/%H%M%S."]
        self._command = [*command, "127.0.0.1:0", str(backlog)]
        self.process: subprocess.Popen | None = None
        self.errors = ""  # what it said on stderr, once stopped
        self.host = "127.0.0.1"
        self.port = 0

    def url(self, scheme: str = "smtp") -> str:
        return f"{scheme}://{self.host}:{self.port}"

    def __enter__(self) -> SmtpSink:
        self.process = subprocess.Popen(self._command, stdin=subprocess.DEVNULL, stdout=self._counters,
                                        stderr=subprocess.PIPE)
        try:
            self.port = listening_port(self.process.pid)
        except BaseException:
            self.process.kill()
            self.process.wait()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self.process is not None
        self.process.terminate()
        self.errors = self.process.communicate(timeout=30)[1].decode(errors="replace")
        if self.dump_to is not None:
            shutil.rmtree(self.dump_to, ignore_errors=True)

    def cpu_seconds(self) -> float:
        assert self.process is not None
        return process_cpu_seconds(self.process.pid)

    def accepted(self) -> int:
        """How many messages it has taken so far (its last "mesg=N" counter)."""
        self._counters.seek(0)
        updates = [update for update in self._counters.read().split(b"\r") if update.strip()]
        fields = dict(field.split(b"=", 1) for field in (updates[-1] if updates else b"").split() if b"=" in field)
        return int(fields.get(b"mesg", 0))

    def dumps(self) -> list[bytes]:
        """The transactions it took so far, each as smtp-sink wrote it (envelope attributes, then the message)."""
        assert self.dump_to is not None
        return [path.read_bytes() for path in sorted(self.dump_to.iterdir())]


class PostfixServer:
    """A private Postfix instance (its own config, queue and mail folders in a new folder under /tmp, which
    its unprivileged processes can reach: pytest's own temporary folders are closed to them), run as root.

    Mail for `mailboxes` (local parts at example.org) is delivered by Postfix's virtual agent into one
    Maildir; any other recipient at example.org is refused at RCPT with 550 5.1.1.
    """

    def __init__(self, *, mailboxes: list[str], main_cf: dict[str, str] | None = None) -> None:
        if POSTFIX is None:
            raise RuntimeError("postfix is not installed (Debian package postfix)")
        if os.geteuid() != 0:
            raise RuntimeError("a private Postfix instance must be started as root")
        self.folder = Path(tempfile.mkdtemp(prefix="newsletter-postfix-"))
        self.folder.chmod(0o755)
        self.config_dir, self.maildir = self.folder / "etc", self.folder / "mail" / "all"
        self.host, self.port = "127.0.0.1", 0
        self._mailboxes = mailboxes
        self._main_cf = main_cf or {}

    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    def __enter__(self) -> PostfixServer:
        self._configure()
        try:
            self._postfix("start")
        except BaseException:
            shutil.rmtree(self.folder, ignore_errors=True)
            raise
        pid = int((self.folder / "spool" / "pid" / "master.pid").read_text().split()[0])
        self.port = listening_port(pid)
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self._postfix("stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def delivered(self, count: int, timeout: float = START_TIMEOUT) -> list[bytes]:
        """Wait until `count` messages were delivered to the Maildir (delivery is asynchronous); return them."""
        deadline = time.monotonic() + timeout
        while True:
            new = self.maildir / "new"
            paths = sorted(new.iterdir(), key=lambda path: path.stat().st_mtime_ns) if new.is_dir() else []
            if len(paths) >= count or time.monotonic() > deadline:
                return [path.read_bytes() for path in paths]
            time.sleep(0.05)

    def _postfix(self, action: str) -> None:
        result = subprocess.run([POSTFIX, "-c", str(self.config_dir), action], capture_output=True, text=True,
                                timeout=120)
        if result.returncode != 0:
            log = self.folder / "maillog"
            last_words = log.read_text().splitlines()[-3:] if log.exists() else []
            raise RuntimeError(f"postfix {action} failed: {' / '.join([result.stderr.strip(), *last_words])}")

    def _configure(self) -> None:
        etc, spool, data, mail = (self.folder / name for name in ("etc", "spool", "data", "mail"))
        for path in (etc, spool, data, mail):
            path.mkdir(parents=True, exist_ok=True)
        shutil.chown(data, "postfix")
        os.chmod(mail, 0o777)  # the virtual agent writes as nobody
        nobody = subprocess.run(["id", "-u", "nobody"], capture_output=True, text=True, check=True).stdout.strip()
        nogroup = subprocess.run(["id", "-g", "nobody"], capture_output=True, text=True, check=True).stdout.strip()
        (etc / "vmailbox").write_text("".join(f"{name}@example.org all/\n" for name in self._mailboxes))
        settings = {
            "compatibility_level": "3.6",
            "queue_directory": str(spool),
            "data_directory": str(data),
            "mail_owner": "postfix",
            "myhostname": HOSTNAME,
            "mydestination": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "smtpd_relay_restrictions": "permit_mynetworks, reject",
            "virtual_mailbox_domains": "example.org",
            "virtual_mailbox_base": str(mail),
            "virtual_mailbox_maps": f"texthash:{etc}/vmailbox",
            "virtual_uid_maps": f"static:{nobody}",
            "virtual_gid_maps": f"static:{nogroup}",
            "virtual_minimum_uid": "1",
            "maillog_file": str(self.folder / "maillog"),
            "maillog_file_prefixes": str(self.folder),
            "smtputf8_enable": "yes",
            "message_size_limit": str(64 * 1024 * 1024),
            "virtual_mailbox_limit": "0",
            "smtpd_banner": "$myhostname ESMTP",
            "biff": "no",
            **self._main_cf,
        }
        (etc / "main.cf").write_text("".join(f"{name} = {value}\n" for name, value in settings.items()))
        (etc / "master.cf").write_text(MASTER_CF)
