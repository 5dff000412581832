"""A tracking server (`http://...`) that is not there, found in seconds before any work.

MLflow's client retries a request it cannot send (`MLFLOW_HTTP_REQUEST_MAX_RETRIES`
times, backing off by `MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR`, each try waiting up to
`MLFLOW_HTTP_REQUEST_TIMEOUT` seconds): against a server that is down, a job sits
for minutes in urllib3's retry warnings before it fails. :func:`check_reachable`
asks the server's `/health` page once, with a short timeout, before a command
starts its work, and :class:`TrackingUnreachable` says in one line which server
did not answer and what to check.
"""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

# Seconds the start of a command waits for the tracking server's answer.
PROBE_TIMEOUT_S = 5.0


class TrackingUnreachable(ConnectionError):
    """The tracking server did not answer: its address, why, what to check (one line).

    Args:
        uri: the tracking URI.
        reason: what the connection attempt said (`Connection refused`, `timed out`).
        timeout_s: how long it waited.

    """

    def __init__(self, uri: str, reason: str, timeout_s: float) -> None:
        self.uri = uri
        self.one_line = (
            f"the MLflow tracking server {uri} is unreachable ({reason}; asked {uri}/health, "
            f"waited {timeout_s:g} s): check that `mlflow server` runs there and listens on "
            "that host and port (--host 0.0.0.0 to be reached from other machines), that "
            "this machine reaches it (firewall, $HTTP_PROXY/$NO_PROXY), and the address in "
            "mlflow.tracking_uri or $MLFLOW_TRACKING_URI; nothing was started"
        )
        super().__init__(self.one_line)


def _reason(err: BaseException) -> str:
    """What a failed connection attempt says, in a few words."""
    cause = err.reason if isinstance(err, urllib.error.URLError) else err
    if isinstance(cause, socket.timeout | TimeoutError):
        return "no answer: timed out"
    if isinstance(cause, socket.gaierror):
        return f"unknown host: {cause.strerror}"
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    return str(cause) or type(cause).__name__


def check_reachable(uri: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Raise :class:`TrackingUnreachable` if the tracking server at `uri` does not answer.

    Only `http://` and `https://` URIs are asked (a database or a sqlite file is
    opened by MLflow itself, and says what is wrong in its own error). Any HTTP
    answer counts as reachable, an error status included (a proxy that asks for a
    login, a server without `/health`): MLflow's own requests then say more.

    Args:
        uri: the tracking URI.
        timeout_s: how long to wait for the answer (connect and read).

    Example:
        >>> check_reachable("sqlite:///outputs/mlflow.db")  # not a server: not asked

    """
    if uri.split("://", 1)[0].lower() not in ("http", "https"):
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout_s):
            return
    except urllib.error.HTTPError:
        return  # it answered
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise TrackingUnreachable(uri, _reason(err), timeout_s) from err
