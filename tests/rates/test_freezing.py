import keras
import numpy as np
import pytest

import keras_transfer as kt
from tests.conftest import as_numpy, pixels, tiny_backbone

X = pixels(16)
Y = np.arange(16) % 2
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _compiled(model, optimizer="adam"):
    model.compile(optimizer, LOSS)
    return model


def _values(layers, names=None):
    return {
        w.path: as_numpy(w).copy()
        for l in layers
        for w in l.weights
        if names is None or w.name in names
    }


def _changed(before, after):
    return {path for path in before if not np.allclose(before[path], after[path], atol=0)}


def _bn_layers(model):
    return [
        l
        for l in model.get_layer("backbone").layers
        if isinstance(l, keras.layers.BatchNormalization)
    ]


STATS = ("moving_mean", "moving_variance")


@pytest.mark.parametrize(
    "bn, stats_move, affine_moves",
    [("inference", False, False), ("train_affine", False, True), ("train", True, True)],
)
def test_bn_policy_in_one_fit_step(bn, stats_move, affine_moves):
    model = _compiled(
        kt.transfer(tiny_backbone(), 2, strategy="fine_tune", bn=bn, preprocessing="tf")
    )
    bns = _bn_layers(model)
    stats, affine = _values(bns, STATS), _values(bns, ("gamma", "beta"))
    model.fit(X, Y, epochs=1, batch_size=16, verbose=0)
    assert bool(_changed(stats, _values(bns, STATS))) == stats_move
    assert bool(_changed(affine, _values(bns, ("gamma", "beta")))) == affine_moves
    convs = [model.get_layer("backbone").get_layer(f"conv{i}") for i in range(3)]
    kernels = _values(convs)
    model.fit(X, Y, epochs=1, batch_size=16, verbose=0)
    assert _changed(kernels, _values(convs)) == set(kernels)  # the convs train


def test_inference_policy_keeps_every_moving_statistic_of_a_real_backbone():
    model = _compiled(
        kt.transfer("mobilenet", 2, weights=None, input_shape=(32, 32, 3), strategy="fine_tune")
    )
    stats = _values(_bn_layers(model), STATS)
    assert len(stats) == 2 * 27
    model.fit(X, Y, epochs=1, batch_size=8, verbose=0)
    assert _changed(stats, _values(_bn_layers(model), STATS)) == set()


def test_feature_extraction_freezes_and_always_runs_in_inference_mode():
    # The backbone holds a Dropout: in a plain Keras functional model the outer
    # training=True would switch it on even under backbone(x, training=False).
    model = kt.transfer(tiny_backbone(top=False, dropout=0.9), preprocessing="tf")
    assert model.get_layer("backbone").trainable_weights == []
    np.testing.assert_array_equal(
        as_numpy(model(X, training=True)), as_numpy(model(X, training=False))
    )
    classifier = _compiled(kt.transfer(tiny_backbone(), 2, preprocessing="tf"))
    backbone = _values(classifier.get_layer("backbone").layers)
    classifier.fit(X, Y, epochs=1, batch_size=8, verbose=0)
    assert _changed(backbone, _values(classifier.get_layer("backbone").layers)) == set()


def test_unfreeze_by_count_name_and_layers():
    model = kt.transfer(tiny_backbone(), 2)
    backbone = model.get_layer("backbone")
    assert [b for b, _ in backbone.blocks] == ["conv0", "conv1", "conv2"]
    kt.unfreeze(model, blocks=1)
    assert [l.name for l in backbone.layers if l.trainable_weights] == ["conv2"]
    kt.unfreeze(model, blocks="conv1", bn="train")
    assert [l.name for l in backbone.layers if l.trainable_weights] == [
        "conv1",
        "bn1",
        "conv2",
        "bn2",
    ]
    kt.unfreeze(model, blocks=["conv0", "bn0"])
    assert [l.name for l in backbone.layers if l.trainable_weights] == ["conv0", "bn0"]
    kt.freeze(model)
    assert backbone.trainable_weights == []
    assert model.get_layer("head").trainable_weights


def test_trainable_summary_rows_and_table():
    model = kt.transfer(tiny_backbone(), 2, strategy="fine_tune", unfreeze=1, bn="train_affine")
    printed = []
    rows = kt.trainable_summary(model, print_fn=printed.append)
    assert [(r["block"], r["trainable"], r["bn"]) for r in rows] == [
        ("conv0", "no", "frozen"),
        ("conv1", "no", "frozen"),
        ("conv2", "yes", "train_affine"),
        ("head", "yes", "-"),
    ]
    assert rows[0]["params"] == 3 * 3 * 3 * 8 + 8 + 4 * 8
    assert "conv2" in printed[0] and "train_affine" in printed[0]


def test_unfreezing_a_compiled_model_takes_effect_and_keeps_optimizer_state():
    model = _compiled(kt.transfer(tiny_backbone(), 2, preprocessing="tf"))
    model.fit(X, Y, epochs=1, batch_size=8, verbose=0)
    head_kernel = model.get_layer("head").get_layer("classifier").kernel
    slots = {
        v.path: as_numpy(v).copy()
        for v in model.optimizer.variables
        if head_kernel.path.replace("/", "_") in v.path
    }
    assert len(slots) == 2  # Adam's two moments of the head kernel
    iterations = int(as_numpy(model.optimizer.iterations))
    kt.unfreeze(model, blocks=1)
    kept = {v.path: as_numpy(v) for v in model.optimizer.variables if v.path in slots}
    for path, value in slots.items():
        np.testing.assert_array_equal(kept[path], value)
    assert int(as_numpy(model.optimizer.iterations)) == iterations
    backbone = model.get_layer("backbone")
    top, low = backbone.get_layer("conv2").kernel, backbone.get_layer("conv0").kernel
    top0, low0 = as_numpy(top).copy(), as_numpy(low).copy()
    model.fit(X, Y, epochs=1, batch_size=8, verbose=0)
    assert not np.allclose(as_numpy(top), top0)
    np.testing.assert_array_equal(as_numpy(low), low0)
