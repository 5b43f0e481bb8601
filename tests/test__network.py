"""Downloads that fail offline: a probe that gives up in seconds, and one
error that says what to do instead."""

import socket
import time

import pytest

import keras_transfer as kt
from keras_transfer import _network
from tests.conftest import runs_once_in

pytestmark = runs_once_in("jax")


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
