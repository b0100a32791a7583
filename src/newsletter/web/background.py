"""Work a page starts but does not wait for: the opt-in mail, so that /subscribe answers in the same time
whatever the address (new, known or suppressed) and a slow relay never holds a visitor's request."""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable

from flask import Flask


class Background:
    """A small pool running jobs inside the application's context (so they can use state() and database())."""

    def __init__(self, app: Flask, workers: int = 2) -> None:
        self.app = app
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="newsletter-web-job")
        self._lock = threading.Lock()
        self._pending: set[Future] = set()

    def submit(self, job: Callable[..., None], *args) -> None:
        def run() -> None:
            with self.app.app_context():
                try:
                    job(*args)
                except Exception:  # a job has no visitor to show an error to: the log has it
                    self.app.logger.exception("background job %s failed", getattr(job, "__name__", job))

        future = self._pool.submit(run)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._forget)

    def _forget(self, future: Future) -> None:
        with self._lock:
            self._pending.discard(future)

    def drain(self) -> None:
        """Wait until every job submitted so far has finished (tests, and an orderly shutdown)."""
        while True:
            with self._lock:
                pending = list(self._pending)
            if not pending:
                return
            for future in pending:
                future.result()
