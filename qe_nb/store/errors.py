"""The store's error: a database that cannot be opened, read or written.

- :class:`StoreError` -- a :class:`qe_nb.exceptions.QeNbError` naming the database.
"""

from __future__ import annotations

from qe_nb.exceptions import QeNbError

__all__ = ["StoreError"]


class StoreError(QeNbError):
    """A review database cannot be opened, read or written, or its schema is newer than this qe_nb.

    The message names the database (password masked) and the operation that failed.
    """
