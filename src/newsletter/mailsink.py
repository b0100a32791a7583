"""A real SMTP server on this machine that accepts everything: the far end of `newsletter demo` and benchmarks.

Run it on its own with `python -m newsletter.mailsink --port 2525 [--maildir DIR]`: the first line it prints
is the port it listens on (useful with --port 0); it serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from newsletter.transport import MaildirTransport

DATA_SIZE_LIMIT = 64 * 1024 * 1024
SERVER_HOSTNAME = "mailsink.localhost"


class LenientSMTP(SMTP):
    """aiosmtpd with room for the very long lines of inlined HTML, which a strict server answers with 500."""

    line_length_limit = 1024 * 1024


class LoopbackController(Controller):
    """An aiosmtpd Controller that may listen on port 0 and reports the port the system chose."""

    def __init__(self, handler: Any, host: str = "127.0.0.1", port: int = 0, **smtp_options: Any) -> None:
        smtp_options.setdefault("server_hostname", SERVER_HOSTNAME)
        smtp_options.setdefault("data_size_limit", DATA_SIZE_LIMIT)
        smtp_options.setdefault("enable_SMTPUTF8", True)
        super().__init__(handler, hostname=host, port=port, **smtp_options)

    def factory(self) -> SMTP:
        return LenientSMTP(self.handler, **self.SMTP_kwargs)

    def _trigger_server(self) -> None:
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class _SinkHandler:
    def __init__(self, maildir: MaildirTransport | None) -> None:
        self.maildir = maildir
        self.count = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.maildir is not None:
            for rcpt in envelope.rcpt_tos:
                reply = self.maildir.send(envelope.mail_from or "", rcpt, envelope.original_content or b"")
                if reply.code != 250:
                    return f"451 4.3.0 {reply.text}"
        self.count += 1
        return "250 2.0.0 OK: stored" if self.maildir is not None else "250 2.0.0 OK: counted"


class Sink:
    """A running mail sink; `count` is how many messages it has accepted so far."""

    def __init__(self, controller: LoopbackController, handler: _SinkHandler) -> None:
        self._controller = controller
        self._handler = handler
        self.host: str = controller.hostname
        self.port: int = controller.port

    @property
    def count(self) -> int:
        return self._handler.count

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"smtp://{host}:{self.port}"

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_sink(maildir: Path | None, host: str = "127.0.0.1", port: int = 0) -> Sink:
    """Listen on host:port (0: any free port); store one file per recipient in `maildir`, or only count."""
    handler = _SinkHandler(MaildirTransport(maildir) if maildir is not None else None)
    controller = LoopbackController(handler, host=host, port=port)
    controller.start()
    return Sink(controller, handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m newsletter.mailsink", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=2525, help="port to listen on; 0 picks a free one (default 2525)")
    parser.add_argument("--maildir", type=Path, help="store messages in this Maildir; without it, only count them")
    options = parser.parse_args(argv)

    stop_signals = {signal.SIGTERM, signal.SIGINT}
    # Blocked before the server thread starts, so that only sigwait() below ever receives them.
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    try:
        sink = start_sink(options.maildir, options.host, options.port)
    except OSError as error:
        print(
            f"mailsink: cannot listen on {options.host}:{options.port}: {error}; "
            "choose another --port (0 picks a free one)",
            file=sys.stderr,
        )
        return 1
    print(sink.port, flush=True)
    where = f"storing in {options.maildir}" if options.maildir else "counting only"
    print(f"mailsink: listening on {sink.url}, {where}; stop with Ctrl-C", file=sys.stderr, flush=True)
    signal.sigwait(stop_signals)
    sink.stop()
    print(f"mailsink: accepted {sink.count} messages", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
