"""Reviewers' verdicts as data: the verdict vocabulary shared by the review store and the apps.

- :data:`VERDICTS` -- the verdicts a reviewer can record.
"""

from __future__ import annotations

__all__ = ["VERDICTS"]

VERDICTS: tuple[str, ...] = ("accept", "needs correction", "reject")
"""The verdicts a reviewer can record, in the order of the app's buttons."""
