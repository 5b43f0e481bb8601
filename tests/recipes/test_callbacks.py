import keras
import numpy as np
import pytest

import keras_transfer as kt
from tests.conftest import as_numpy, pixels, tiny_backbone

X = pixels(16)
Y = np.arange(16) % 2
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
CONVS = ("conv0", "conv1", "conv2")


def _model(lr=1e-2):
    model = kt.transfer(tiny_backbone(), 2, preprocessing="tf", dropout=0.0)
    model.compile(keras.optimizers.Adam(lr), LOSS)
    return model


def _fit(model, callbacks, epochs=3, **kwargs):
    return model.fit(
        X, Y, epochs=epochs, batch_size=8, shuffle=False, verbose=0, callbacks=callbacks, **kwargs
    )


def _snapshot(model):
    return {v.path: as_numpy(v).copy() for v in model.weights}


class _Record(keras.callbacks.Callback):
    """Weights at each epoch's end; optimizer facts at each epoch's start."""

    def __init__(self):
        super().__init__()
        self.ends, self.begins = [], []

    def on_epoch_begin(self, epoch, logs=None):
        optimizer = self.model.optimizer
        if not optimizer.built:  # TensorFlow builds it in the first step
            self.begins.append({"trainable": len(self.model.trainable_variables)})
            return
        self.begins.append(
            {
                "built_for": len(optimizer._trainable_variables),
                "trainable": len(self.model.trainable_variables),
                "iterations": int(as_numpy(optimizer.iterations)),
                "head_moments": _head_moments(self.model),
            }
        )

    def on_epoch_end(self, epoch, logs=None):
        self.ends.append(_snapshot(self.model))
        self.begins[-1]["head_moments_at_end"] = _head_moments(self.model)


def _head_moments(model):
    kernel = model.get_layer("head").get_layer("classifier").kernel
    inner = model.optimizer.inner_optimizer
    index = inner._get_variable_index(kernel)
    return [as_numpy(inner._momentums[index]).copy(), as_numpy(inner._velocities[index]).copy()]


def test_each_step_takes_effect_at_the_next_batch_and_keeps_state():
    model = _model()
    record = _Record()
    _fit(model, [kt.callbacks.GradualUnfreezing(verbose=0), record])
    ends = record.ends
    changed = [
        {p.split("/")[0] for p in ends[e] if not np.array_equal(ends[e][p], ends[e - 1][p])}
        for e in range(1, 3)
    ]
    # Epoch 1 trains the top block, epoch 2 two blocks; conv0 stays frozen.
    assert changed[0] & set(CONVS) == {"conv2"}
    assert changed[1] & set(CONVS) == {"conv1", "conv2"}
    assert all("head" in c for c in changed)
    # bn="inference": no BatchNorm statistic (nor gamma/beta) ever moved.
    assert not any(c & {"bn0", "bn1", "bn2"} for c in changed)
    # The optimizer trains exactly the trainable set: frozen layers get no
    # gradients and no slots.
    assert [b["trainable"] for b in record.begins] == [2, 4, 6]
    assert all(b["built_for"] == b["trainable"] for b in record.begins[1:])
    # Rebuilding for a new block kept the head's Adam moments and the count.
    for before, after in zip(record.begins, record.begins[1:]):
        for kept, previous in zip(after["head_moments"], before["head_moments_at_end"]):
            np.testing.assert_array_equal(kept, previous)
            assert np.any(kept != 0)
    assert [b["iterations"] for b in record.begins[1:]] == [2, 4]


def test_schedule_arithmetic():
    unfreezing = kt.callbacks.GradualUnfreezing(
        start_epoch=2, every=2, blocks_per_step=2, max_blocks=5
    )
    assert [unfreezing.blocks_at(e) for e in range(8)] == [0, 0, 2, 2, 4, 4, 5, 5]


class _Interrupt(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError("interrupted")


def _assert_same_weights(a, b):
    for v, w in zip(a.weights, b.weights):
        np.testing.assert_allclose(as_numpy(v), as_numpy(w), rtol=1e-5, atol=1e-6, err_msg=v.path)


def test_an_interrupted_fit_resumes_with_the_same_schedule_and_state(tmp_path):
    keras.utils.set_random_seed(1)
    reference = _model()
    initial = reference.get_weights()
    _fit(reference, [kt.callbacks.GradualUnfreezing(verbose=0)])

    def fresh():
        model = _model()
        model.set_weights(initial)
        return model

    # 1. Through BackupAndRestore. A new process would start from a fresh,
    # frozen model; the backup holds two epochs of training, one block
    # unfrozen, and that block's Adam moments.
    backup = str(tmp_path / "backup")
    with pytest.raises(RuntimeError, match="interrupted"):
        _fit(
            fresh(),
            [
                kt.callbacks.GradualUnfreezing(verbose=0),
                keras.callbacks.BackupAndRestore(backup),
                _Interrupt(2),
            ],
        )
    resumed = fresh()
    record = _Record()
    _fit(
        resumed,
        [
            kt.callbacks.GradualUnfreezing(verbose=0),
            keras.callbacks.BackupAndRestore(backup),
            record,
        ],
    )
    assert len(record.begins) == 1  # epoch 2 only
    assert record.begins[0]["trainable"] == 6
    assert record.begins[0]["iterations"] == 4
    _assert_same_weights(resumed, reference)

    # 2. From a checkpoint saved after epoch 1, with initial_epoch.
    path = str(tmp_path / "epoch.keras")
    _fit(
        fresh(),
        [kt.callbacks.GradualUnfreezing(verbose=0), keras.callbacks.ModelCheckpoint(path)],
        epochs=2,
    )
    loaded = keras.models.load_model(path)
    assert len(loaded.trainable_variables) == 4  # head + the top block
    _fit(loaded, [kt.callbacks.GradualUnfreezing(verbose=0)], initial_epoch=2)
    _assert_same_weights(loaded, reference)


def test_works_beside_learning_rate_callbacks():
    model = _model(lr=1e-3)
    history = _fit(
        model,
        epochs=4,
        callbacks=[
            kt.callbacks.GradualUnfreezing(verbose=0),
            keras.callbacks.LearningRateScheduler(lambda epoch, lr: 1e-3 if epoch < 2 else lr),
            keras.callbacks.ReduceLROnPlateau("loss", patience=0, factor=0.5, min_delta=10),
            keras.callbacks.EarlyStopping("loss", patience=10),
        ],
    )
    # ReduceLROnPlateau halves the rate at each epoch's end (min_delta=10
    # means "never improved"); the scheduler resets it while epoch < 2.
    assert history.history["learning_rate"] == pytest.approx([1e-3, 1e-3, 5e-4, 2.5e-4])
    assert float(as_numpy(model.optimizer.learning_rate)) == pytest.approx(1.25e-4)
    assert isinstance(model.optimizer, kt.optimizers.BlockwiseLR)


def test_lr_factor_gives_lower_blocks_lower_rates():
    model = _model()
    _fit(model, [kt.callbacks.GradualUnfreezing(lr_factor=0.5, verbose=0)], epochs=3)
    assert model.optimizer.multipliers == {"conv1": 0.25, "bn1": 0.25, "conv2": 0.5, "bn2": 0.5}


def test_explicit_blocks_for_a_plain_model_and_the_error_without():
    model = tiny_backbone()
    model.compile("adam", LOSS)
    y = np.arange(16) % 10
    with pytest.raises(ValueError, match=r"Pass the layers to unfreeze explicitly"):
        model.fit(X, y, epochs=1, verbose=0, callbacks=[kt.callbacks.GradualUnfreezing(verbose=0)])
    unfreezing = kt.callbacks.GradualUnfreezing(
        blocks=[["conv0", "bn0"], ["conv1", "bn1"], ["conv2", "bn2"]], verbose=0
    )
    model.fit(X, y, epochs=2, verbose=0, callbacks=[unfreezing])
    assert {l.name for l in model.layers if l.trainable_weights} == {"conv2", "predictions"}
    with pytest.raises(ValueError, match=r"Received: blocks=\[\['conv9'\]\]"):
        model.fit(
            X, y, epochs=1, verbose=0, callbacks=[kt.callbacks.GradualUnfreezing(blocks=["conv9"])]
        )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"every": 0}, "Received: every=0"),
        ({"start_epoch": -1}, "Received: start_epoch=-1"),
        ({"bn": "frozen"}, "Received: bn='frozen'"),
        ({"lr_factor": 0}, "Received: lr_factor=0"),
        ({"max_blocks": -2}, "Received: max_blocks=-2"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        kt.callbacks.GradualUnfreezing(**kwargs)
