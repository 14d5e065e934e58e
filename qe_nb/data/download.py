"""Downloads with limits: an overall deadline, a stall rule, a size cap, nothing left behind.

:func:`qe_nb.fetch_dataset` downloads the files of a ``remote`` data set through
``pooch.retrieve`` with :class:`LimitedDownloader` as its downloader (pooch's documented
``downloader(url, output_file, pooch)`` callable). pooch streams into a temporary file beside
the destination and renames it only when complete; the downloader stops a transfer that

- runs past the call's deadline (``timeout``, default :data:`DEFAULT_TIMEOUT` seconds for the
  whole :func:`qe_nb.fetch_dataset` call),
- sends no byte for :data:`DEFAULT_STALL` seconds (``stall``),
- announces (``Content-Length``) or sends more bytes than the manifest's ``size`` of the file,
  or :data:`DEFAULT_MAX_BYTES` when the manifest gives none,

and raises :class:`DownloadLimitError`; pooch then deletes the temporary file. A SIGTERM during
a download is turned into ``SystemExit(143)`` (:func:`terminate_cleanly`), so that the
temporary file is deleted too; SIGKILL cannot be caught and may leave a ``tmp*`` file, which is
never taken for the data (the data set's files only appear by rename).
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

from qe_nb.exceptions import ManifestError

__all__ = [
    "DEFAULT_TIMEOUT",
    "DEFAULT_STALL",
    "DEFAULT_MAX_BYTES",
    "DownloadLimitError",
    "LimitedDownloader",
    "terminate_cleanly",
]

DEFAULT_TIMEOUT = 1800.0
"""Seconds a whole :func:`qe_nb.fetch_dataset` call may spend downloading (30 minutes)."""
DEFAULT_STALL = 60.0
"""Seconds without a byte after which a download is abandoned."""
DEFAULT_MAX_BYTES = 4 * 1024**3
"""The cap (4 GiB) on one file whose manifest entry gives no ``size``."""

_CHUNK = 1 << 16


class DownloadLimitError(ManifestError):
    """A download stopped by a limit: the deadline, the stall rule or the size cap."""


class LimitedDownloader:
    """A pooch downloader (``downloader(url, output_file, pooch)``) that enforces the limits.

    Parameters
    ----------
    deadline : float
        ``time.monotonic()`` value after which the transfer is stopped.
    stall : float
        Seconds without a byte after which the transfer is stopped (the socket read timeout).
    max_bytes : int
        The most bytes the file may have.
    progress : bool, default False
        Show a progress bar (tqdm), as pooch's own downloader does.
    """

    def __init__(self, *, deadline: float, stall: float, max_bytes: int, progress: bool = False) -> None:
        self.deadline = deadline
        self.stall = stall
        self.max_bytes = max_bytes
        self.progress = progress

    def __call__(self, url: str, output_file: str, pooch: Any) -> None:  # noqa: ARG002 - pooch's signature
        """Stream ``url`` into ``output_file`` within the limits, or raise DownloadLimitError."""
        import requests
        import urllib3

        left = self.deadline - time.monotonic()
        if left <= 0:
            raise DownloadLimitError(f"the overall timeout ran out before {url} was started")
        read_timeout = min(self.stall, left)
        with requests.get(url, stream=True, timeout=(min(read_timeout, 30.0), read_timeout)) as response:
            response.raise_for_status()
            announced = response.headers.get("content-length", "")
            if announced.isdigit() and int(announced) > self.max_bytes:
                raise DownloadLimitError(
                    f"{url} announces {int(announced):,} bytes, more than the {self.max_bytes:,} allowed"
                )
            bar = _progress_bar(int(announced) if announced.isdigit() else None) if self.progress else None
            written = 0
            try:
                with open(output_file, "wb") as fh:
                    while True:
                        try:
                            # read1: what has arrived (up to a chunk), so the deadline is checked
                            # after every packet, however slowly the bytes trickle in.
                            chunk = response.raw.read1(_CHUNK, decode_content=True)
                        except (urllib3.exceptions.ReadTimeoutError, TimeoutError) as exc:
                            raise DownloadLimitError(
                                f"{url} sent nothing for {read_timeout:g} s (after {written:,} bytes)"
                            ) from exc
                        if not chunk:
                            break
                        written += len(chunk)
                        if written > self.max_bytes:
                            raise DownloadLimitError(
                                f"{url} sent more than the {self.max_bytes:,} bytes allowed"
                            )
                        fh.write(chunk)
                        if bar is not None:
                            bar.update(len(chunk))
                        if time.monotonic() > self.deadline:
                            raise DownloadLimitError(
                                f"{url} was still downloading when the overall timeout ran out "
                                f"({written:,} bytes received)"
                            )
            finally:
                if bar is not None:
                    bar.close()


def _progress_bar(total: int | None) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, leave=True)


@contextlib.contextmanager
def terminate_cleanly() -> Iterator[None]:
    """Within the block, SIGTERM raises ``SystemExit(143)`` so that ``finally`` clauses run.

    Only in the main thread and only while SIGTERM has its default action (a handler the
    application installed is left alone); the previous action is restored on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    try:
        previous = signal.getsignal(signal.SIGTERM)
    except (AttributeError, ValueError):  # no SIGTERM on this platform
        yield
        return
    if previous not in (signal.SIG_DFL, None):
        yield
        return

    def handler(signum: int, frame: Any) -> None:  # noqa: ARG001 - signal's signature
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
