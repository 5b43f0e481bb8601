"""Downloads that fail offline: a probe that gives up in seconds, and one
error that says what to do instead."""

import socket
import time

import pytest

import keras_transfer as kt
from keras_transfer.utils import _network
from tests.conftest import runs_once_in

pytestmark = runs_once_in("jax")


def test_an_unreachable_host_is_known_within_the_probe_time(monkeypatch):
    def hangs(*args, **kwargs):
        time.sleep(_network.PROBE_SECONDS + 5)

    monkeypatch.setattr(_network, "PROBE_SECONDS", 0.2)
    monkeypatch.setattr(socket, "create_connection", hangs)
    start = time.perf_counter()
    assert _network.reachable("huggingface.co") is False
    assert time.perf_counter() - start < 2


def test_network_errors_become_one_connection_error_and_others_pass(monkeypatch):
    with pytest.raises(ConnectionError, match="Could not download x: offline.*To work offline, y"):
        with _network.network_errors("x", "y"):
            raise TimeoutError("timed out")
    with pytest.raises(ConnectionError, match="URL fetch failure"):
        with _network.network_errors("x", "y"):
            raise Exception("URL fetch failure on https://...")  # noqa: TRY002 -- Keras's get_file
    with pytest.raises(KeyError):
        with _network.network_errors("x", "y"):
            raise KeyError("not a network error")


@runs_once_in("torch")
def test_an_offline_preset_fails_fast_and_clearly(monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", no_network)
    start = time.perf_counter()
    with pytest.raises(ConnectionError, match="Could not reach huggingface.co"):
        kt.transfer("hf://google/vit-base-patch16-224", 2)
    assert time.perf_counter() - start < 5
    requests = pytest.importorskip("requests", reason="the requests client of KerasHub presets")
    with pytest.raises(ConnectionError, match="Could not download the KerasHub preset 'x'"):
        with _network.network_errors("the KerasHub preset 'x'", "pass a directory"):
            raise requests.exceptions.ConnectionError("Max retries exceeded")
