import keras
import numpy as np
import pytest

import keras_transfer as kt
from tests.conftest import as_numpy, pixels, tiny_backbone

X = pixels(16)
Y = np.arange(16) % 2
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _distance_after_fit(regularization):
    keras.utils.set_random_seed(0)
    model = kt.transfer(
        tiny_backbone(),
        2,
        strategy="fine_tune",
        preprocessing="tf",
        dropout=0.0,
        regularization=regularization,
    )
    backbone = model.get_layer("backbone")
    start = [as_numpy(v).copy() for v in backbone.trainable_variables]
    model.compile(keras.optimizers.SGD(0.05), LOSS)
    model.fit(X, Y, epochs=3, batch_size=8, shuffle=False, verbose=0)
    return sum(
        float(np.sum((as_numpy(v) - s) ** 2)) for v, s in zip(backbone.trainable_variables, start)
    )


def test_high_alpha_keeps_weights_closer_to_the_start():
    free = _distance_after_fit(None)
    anchored = _distance_after_fit(kt.regularizers.L2SP(alpha=10.0, beta=0.0))
    assert free > 0
    assert anchored < 0.5 * free


def test_the_penalty_is_the_papers_formula():
    model = kt.transfer(tiny_backbone(), 2, strategy="fine_tune", preprocessing="tf")
    covered = kt.regularizers.L2SP(alpha=2.0, beta=4.0).attach(model)
    backbone = model.get_layer("backbone")
    # Every weight that can train (BatchNorm's too, frozen or not), and the
    # head's kernel.
    assert covered == 3 * 2 + 3 * 2 + 1
    # At the start the pull toward the pretrained weights is zero; only the
    # head's beta/2 * ||w||^2 remains.
    kernel = as_numpy(model.get_layer("head").get_layer("classifier").kernel)
    total = sum(float(as_numpy(loss)) for loss in model.losses)
    assert total == pytest.approx(2.0 * np.sum(kernel**2), rel=1e-5)
    conv = backbone.get_layer("conv0").kernel
    conv.assign(as_numpy(conv) + 1.0)
    total = sum(float(as_numpy(loss)) for loss in model.losses)
    assert total == pytest.approx(
        2.0 * np.sum(kernel**2) + 1.0 * int(np.prod(conv.shape)), rel=1e-5
    )


def test_unfreeze_turns_it_on_and_frozen_weights_add_nothing():
    model = kt.transfer(tiny_backbone(), 2, preprocessing="tf")
    kt.unfreeze(model, blocks=1, regularization="l2sp")
    backbone = model.get_layer("backbone")
    assert backbone.get_layer("conv0").kernel.regularizer is not None
    assert len(model.losses) == len(model.trainable_variables) - 1  # not the head bias


def test_bad_input():
    with pytest.raises(ValueError, match=r"Received: alpha=-1"):
        kt.regularizers.L2SP(alpha=-1)
    with pytest.raises(ValueError, match=r"Received: regularization='l1'"):
        kt.transfer(tiny_backbone(), 2, regularization="l1")
    with pytest.raises(ValueError, match="no BackboneModel inside"):
        kt.regularizers.L2SP().attach(tiny_backbone())


def test_l2sp_survives_save_and_load_as_weights_not_json(tmp_path):
    keras.utils.set_random_seed(0)
    model = kt.transfer(
        tiny_backbone(),
        2,
        strategy="fine_tune",
        preprocessing="tf",
        regularization=kt.regularizers.L2SP(alpha=0.5, beta=0.25),
    )
    for variable in model.trainable_variables:  # away from the start: every term counts
        variable.assign(as_numpy(variable) + 0.1)
    before = sorted(float(as_numpy(loss)) for loss in model.losses)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    after = sorted(float(as_numpy(loss)) for loss in loaded.losses)
    assert len(after) == len(before) > 1 and min(before) > 0
    np.testing.assert_allclose(after, before, rtol=1e-6)
    import zipfile

    with zipfile.ZipFile(tmp_path / "m.keras") as archive:
        config = archive.read("config.json")
    assert b"start" not in config and len(config) < 20_000  # the anchors are weights
    # And it still pulls toward the pretrained weights, not toward the loaded ones.
    conv = loaded.get_layer("backbone").get_layer("conv0")
    np.testing.assert_allclose(
        conv.kernel.regularizer.start,
        as_numpy(model.get_layer("backbone").get_layer("conv0").kernel) - 0.1,
        rtol=1e-6,
    )
