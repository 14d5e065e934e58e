"""The Voila server ``qe-nb app`` runs: Voila with a token when asked and a Host / Origin guard.

Run as ``python -m qe_nb.ui.voila_server NOTEBOOK --Voila.ip=... --port=...`` (what
:func:`qe_nb.ui.serve.voila_command` builds). It is :class:`voila.app.Voila` with:

- the token from the environment variable ``QE_NB_APP_TOKEN`` (not the command line, where other
  users of the machine could read it in the process list), handed to Voila's own token login
  (jupyter_server's identity provider) and removed from the environment before kernels start;
- a guard in front of every handler (pages, static files, the kernel websocket): a request whose
  ``Host`` is not this server or whose ``Origin`` is not its ``Host`` gets 403
  (:func:`qe_nb.ui.access.refusal`), on loopback too; extra host names come from
  ``QE_NB_APP_ALLOW_HOSTS`` (comma-separated);
- on loopback also jupyter_server's own host check (``allow_remote_access`` off);
- ``/voila/files/`` serving nothing (Voila serves the notebook folder's images there by default).
"""

from __future__ import annotations

import os
from typing import Any

import tornado.web
from tornado.routing import Matcher, Rule
from voila.app import Voila

from qe_nb.ui.access import (
    HOSTS_VARIABLE,
    TOKEN_VARIABLE,
    is_loopback,
    refusal,
    server_names,
    token_required,
)

__all__ = ["GuardedVoila", "main"]


class _Refused(tornado.web.RequestHandler):
    """Answers 403 with a one-line reason (no traceback, nothing about the app)."""

    def prepare(self) -> None:
        self.set_status(403)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish("403 Forbidden: " + str(self.path_kwargs.get("reason", "")) + "\n")


class _RefusedRequests(Matcher):
    """Matches the requests to refuse (they then reach :class:`_Refused`)."""

    def __init__(self, app: GuardedVoila) -> None:
        self.app = app

    def match(self, request: Any) -> dict[str, Any] | None:
        reason = refusal(request.headers, address=self.app.ip, names=self.app.allowed_names)
        if reason is None:
            return None
        self.app.log.warning("Refused %s %s from %s: %s", request.method, request.path,
                             request.remote_ip, reason)
        return {"path_args": [], "path_kwargs": {"reason": reason}}

    def reverse(self, *args: Any) -> None:
        return None


class GuardedVoila(Voila):
    """:class:`voila.app.Voila` with the token from the environment and the Host / Origin guard."""

    allowed_names: frozenset[str] = frozenset()

    def initialize(self, argv: Any = None) -> None:
        super().initialize(argv)
        self.voila_configuration.file_allowlist = []  # /voila/files/ serves nothing: the app needs no files
        token = os.environ.pop(TOKEN_VARIABLE, "")
        if token:
            self.token = token
        if token_required(self.ip) and not self.token:
            raise SystemExit(f"qe-nb app: serving on {self.ip!r} (not loopback) needs a token "
                             f"(set {TOKEN_VARIABLE}; `qe-nb app` makes one)")
        extra = [h for h in os.environ.get(HOSTS_VARIABLE, "").split(",") if h.strip()]
        self.allowed_names = server_names(self.ip, extra)

    def init_settings(self) -> dict:
        settings = super().init_settings()
        # jupyter_server's own Host check where it fits: a loopback server is for this machine only
        settings["allow_remote_access"] = not is_loopback(self.ip)
        settings["serve_traceback"] = False
        return settings

    def listen(self) -> None:
        # the guard goes first in tornado's routing, in front of Voila's handlers
        self.app.default_router.rules.insert(0, Rule(_RefusedRequests(self), _Refused))
        super().listen()


main = GuardedVoila.launch_instance

if __name__ == "__main__":
    main()
