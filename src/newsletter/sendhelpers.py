"""Helper processes: more cores for one campaign's send ([sending] processes).

The process that runs `send` (or the scheduler) holds the campaign's lease and carries its own share of
the connections; each helper is `python -m newsletter.sendhelpers`, carries another share, and claims
batches from the same delivery log (a claim is one transaction, so no row is claimed twice). The rules
are the engine's own in every process: a result is committed before its connection's next MAIL, a
pause or cancel is read from the database after each commit, a fault pauses the campaign.

    parent -> helper  stdin: the job (a length-prefixed pickle), then one line: "stop" or "lost" (the
                      lease went to another process: leave its rows alone); end of file means stop
    helper -> parent  stdout: lines of JSON, {"counts": {...}} at most every PROGRESS_SECONDS, then
                      {"done": ..., "fault": ..., "error": ...}

A helper dies with the process that started it (PR_SET_PDEATHSIG on Linux, or when its stdin closes),
so a kill of the parent is the same crash as before: at most one second copy per open connection.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable

PROGRESS_SECONDS = 0.1


@dataclass(frozen=True)
class Share:
    """What one helper carries: its connections and its part of the rate limits."""

    connections: int
    rate_per_second: float
    rate_per_hour: float


def shares(connections: int, processes: int, rate_per_second: float, rate_per_hour: float) -> list[Share]:
    """The connections split as evenly as they go (each process at least one), the rates in proportion,
    so that the totals stay what the config says."""
    processes = max(1, min(processes, connections))
    counts = [connections // processes + (1 if i < connections % processes else 0) for i in range(processes)]
    return [Share(n, rate_per_second * n / connections, rate_per_hour * n / connections) for n in counts]


class Helper:
    """One helper process, seen from the parent: its results arrive on a reader thread."""

    def __init__(self, name: str, job: tuple, count: Callable[[str, int], None]) -> None:
        self.name = name
        self.fault: str | None = None
        self.error: str | None = None
        self._count = count
        self._done = False
        payload = pickle.dumps(job)
        self.process = subprocess.Popen([sys.executable, "-m", "newsletter.sendhelpers"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(struct.pack("!Q", len(payload)) + payload)
            self.process.stdin.flush()
        except BrokenPipeError:  # it died at once; the reader says why
            pass
        self._stderr: list[bytes] = []
        self._reader = threading.Thread(target=self._read, name=f"{name}-reader", daemon=True)
        self._reader.start()
        self._errors = threading.Thread(target=self._read_errors, name=f"{name}-stderr", daemon=True)
        self._errors.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            message = json.loads(line)
            for status, n in message.get("counts", {}).items():
                self._count(status, n)
            if message.get("done"):
                self._done = True
                self.fault = message.get("fault")
                self.error = message.get("error")

    def _read_errors(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._stderr = (self._stderr + [line])[-20:]

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_a_moment(self, seconds: float) -> None:
        """Until it ends, or `seconds` (real time: helpers run on the real clock only)."""
        try:
            self.process.wait(seconds)
        except subprocess.TimeoutExpired:
            pass

    def stop(self, lost_lease: bool = False) -> None:
        """Ask it to finish what is in flight, record it and end."""
        try:
            assert self.process.stdin is not None
            self.process.stdin.write(b"lost\n" if lost_lease else b"stop\n")
            self.process.stdin.close()
        except (BrokenPipeError, OSError, ValueError):
            pass

    def wait(self) -> None:
        """Until it ended; what went wrong, if anything, is in `error`."""
        code = self.process.wait()
        self._reader.join()
        self._errors.join()
        if self.error is None and (code != 0 or not self._done):
            last = b"".join(self._stderr).decode("utf-8", "replace").strip().splitlines()
            how = f"ended with exit code {code}" if code >= 0 else f"was killed by signal {-code}"
            self.error = how + (f": {last[-1]}" if last else "")


def _die_with_parent(parent: int) -> None:
    """Linux: be killed when the parent dies (so a kill of the parent kills the whole send, as before)."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # it died before prctl: nothing to help any more
        os._exit(1)


def _read_exactly(fd: int, size: int) -> bytes:
    """From the control pipe, unbuffered: what follows the job must stay in the pipe for _listen."""
    data = b""
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        if not chunk:
            raise SystemExit("the parent went away before the whole job arrived")
        data += chunk
    return data


def _listen(fd: int, stop: threading.Event, lost: threading.Event) -> None:
    """The parent's word (or its end of the pipe closing) stops the helper."""
    if os.read(fd, 16).strip() == b"lost":
        lost.set()
    stop.set()


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent decides
    control = sys.stdin.fileno()
    (size,) = struct.unpack("!Q", _read_exactly(control, 8))
    job = _read_exactly(control, size)  # first, so that the parent's write returns while this one imports

    from .sender import CampaignSender

    config, campaign, rendered, share, transport_url, clock, parent = pickle.loads(job)
    _die_with_parent(parent)
    stop, lost = threading.Event(), threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threading.Thread(target=_listen, args=(control, stop, lost), daemon=True).start()

    out = sys.stdout
    pending: dict[str, int] = {}
    last_flush = time.monotonic()

    def flush() -> None:
        nonlocal last_flush
        if pending:
            out.write(json.dumps({"counts": pending}) + "\n")
            out.flush()
            pending.clear()
        last_flush = time.monotonic()

    def progress(status: str) -> None:
        pending[status] = pending.get(status, 0) + 1
        if time.monotonic() - last_flush >= PROGRESS_SECONDS:
            flush()

    sender = CampaignSender.helper(config, campaign, rendered, share, transport_url=transport_url, clock=clock,
                                   stop=stop, lost_lease=lost, progress=progress)
    error = None
    try:
        sender.carry()
    except Exception as exc:  # reported to the parent, which stops the run with one line
        error = f"{type(exc).__name__}: {exc}"
    finally:
        sender.close()
    if error is None and sender.errors:
        name, exc = sender.errors[0]
        error = f"{name}: {type(exc).__name__}: {exc}"
    flush()
    out.write(json.dumps({"done": True, "fault": sender.fault, "error": error}) + "\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
