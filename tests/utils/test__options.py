"""The options' allowed values, and the one check of a BatchNorm policy."""

import pytest

from keras_transfer.utils import _options
from tests.conftest import runs_once_in

pytestmark = runs_once_in("jax")  # plain Python


def test_check_bn_returns_a_policy_and_names_what_it_allows():
    for policy in _options.BN_POLICIES:
        assert _options.check_bn(policy) == policy
    assert _options.check_bn(None, allow_none=True) is None
    with pytest.raises(ValueError, match=r"`bn` must be one of \('inference', .*Received: bn=None"):
        _options.check_bn(None)
    with pytest.raises(ValueError, match="`policy` must be one of .* Received: policy='eval'"):
        _options.check_bn("eval", argument="policy")


def test_every_option_table_names_each_value_once():
    for name in _options.__all__:
        values = getattr(_options, name)
        if isinstance(values, tuple):
            assert len(set(values)) == len(values), name
