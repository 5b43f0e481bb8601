"""Downloads that fail offline: a short probe of a host, and one error that
says what could not be downloaded and how to work without it."""

import contextlib
import socket
import threading

__all__ = ["PROBE_SECONDS", "network_errors", "reachable"]


PROBE_SECONDS = 3


def reachable(host):
    """Whether a TCP connection to `host`:443 opens within `PROBE_SECONDS`
    (name lookup included, in a thread: it has no timeout of its own)."""
    result = []

    def probe():
        try:
            socket.create_connection((host, 443), timeout=PROBE_SECONDS).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(PROBE_SECONDS)
    return bool(result and result[0])


@contextlib.contextmanager
def network_errors(what, instead):
    """A failed download, whatever the client raised (Keras's get_file: a
    bare Exception; requests: its ConnectionError), as a ConnectionError
    that says what could not be downloaded and how to do without it."""
    try:
        yield
    except Exception as error:
        names = {cls.__name__ for cls in type(error).__mro__}
        if not (
            str(error).startswith("URL fetch failure")
            or names & {"URLError", "ConnectionError", "Timeout", "TimeoutError"}
        ):
            raise
        raise ConnectionError(
            f"Could not download {what}: offline? ({type(error).__name__}: {error}). To work "
            f"offline, {instead}."
        ) from error
