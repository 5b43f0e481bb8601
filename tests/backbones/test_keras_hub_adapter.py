"""KerasHub backbones: tiny constructors with random weights, and a local
preset directory written by `save_to_preset` (offline)."""

import importlib
import json

import keras
import numpy as np
import pytest

import keras_transfer as kt
from keras_transfer.utils import _compat
from tests.conftest import as_numpy, pixels, runs_once_in

# Imported by the first test that runs, not at collection: keras_hub loads
# TensorFlow, which the JAX and torch processes need not hold before then.
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("keras_hub") is None,
    reason="keras-hub is the optional keras-hub extra (Python 3.11+), not installed here",
)


class _Lazy:
    def __getattr__(self, name):
        return getattr(importlib.import_module("keras_hub"), name)


keras_hub = _Lazy()
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
X, Y = pixels(8), np.arange(8) % 3
# These tests check what trains, not how fast: eager steps skip a compile per
# model and per unfreezing step (the compiled path is tested on CNNs).
EAGER = {"run_eagerly": True}


def vit():
    return keras_hub.models.ViTBackbone(
        image_shape=(32, 32, 3), patch_size=4, num_layers=3, num_heads=2, hidden_dim=16, mlp_dim=32
    )


# The tiny transformer shared by the families' constructors: 32 px, patch 4.
TINY = dict(patch_size=4, num_layers=2, hidden_dim=16, num_heads=2, image_shape=(32, 32, 3))
# A tiny text tower (CLIP's, and a text model that is not an image backbone).
TINY_TEXT = dict(
    vocabulary_size=10,
    num_layers=1,
    num_heads=2,
    hidden_dim=8,
    intermediate_dim=16,
    max_sequence_length=4,
)


def dinov2():
    return keras_hub.models.DINOV2Backbone(
        **TINY, intermediate_dim=32, num_register_tokens=2, position_embedding_shape=(32, 32, 3)
    )


def dinov3():
    return keras_hub.models.DINOV3Backbone(**TINY, intermediate_dim=32, num_register_tokens=2)


def clip_vision():
    return keras_hub.models.CLIPVisionEncoder(**TINY, intermediate_dim=32)


def siglip_vision():
    return keras_hub.models.SigLIPVisionEncoder(**TINY, intermediate_dim=32)


def resnet():
    return keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[7],
        stackwise_num_filters=[64, 64],
        stackwise_num_blocks=[2, 1],
        stackwise_num_strides=[1, 2],
        block_type="basic_block",
        use_pre_activation=False,
        image_shape=(None, None, 3),
    )


def efficientnet():
    # One width and no expansion: few distinct kernel shapes, as JAX compiles
    # a truncated-normal initializer per shape (half a second each).
    two = dict(stackwise_squeeze_and_excite_ratios=[0.0, 0.0], stackwise_block_types=["v1", "v1"])
    return keras_hub.models.EfficientNetBackbone(
        stackwise_kernel_sizes=[3, 3],
        stackwise_num_repeats=[1, 2],
        stackwise_input_filters=[8, 8],
        stackwise_output_filters=[8, 8],
        stackwise_expansion_ratios=[1, 1],
        stackwise_strides=[1, 2],
        stackwise_width_coefficients=[1.0, 1.0],
        stackwise_depth_coefficients=[1.0, 1.0],
        stackwise_force_input_filters=[0, 0],
        stackwise_nores_option=[False, False],
        num_features=32,
        **two,
    )


def densenet():
    return keras_hub.models.DenseNetBackbone(stackwise_num_repeats=[1, 1], growth_rate=8)


def _weights(net):
    return [as_numpy(v).copy() for v in net.weights]


@pytest.mark.parametrize(
    "family", [vit, dinov2, dinov3, clip_vision, siglip_vision, resnet, efficientnet, densenet]
)
def test_transfer_builds_each_family_with_both_strategies(family):
    backbone = family()  # built once: each `transfer` makes its own graph of its layers
    for strategy in ("feature_extraction", "fine_tune"):
        model = kt.transfer(backbone, 3, input_shape=(32, 32, 3), strategy=strategy)
        assert [layer.name for layer in model.layers] == [
            "image",
            "preprocessing",
            "backbone",
            "head",
        ]
        assert bool(model.get_layer("backbone").trainable_weights) == (strategy == "fine_tune")
        # Symbolic: a first eager call costs JAX seconds of op compiles per
        # family. The ViT runs for real below, on every backend; DINOv2 and
        # DINOv3 against KerasHub's own graphs, once.
        assert tuple(model.output.shape) == (None, 3)


def test_feature_extraction_leaves_every_backbone_weight_unchanged():
    frozen = kt.transfer(vit(), 3, dropout=0.0)
    before = _weights(frozen.get_layer("backbone"))
    frozen.compile(keras.optimizers.SGD(0.1), LOSS, **EAGER)
    frozen.fit(X, Y, batch_size=8, epochs=1, verbose=0)
    for old, new in zip(before, _weights(frozen.get_layer("backbone"))):
        np.testing.assert_array_equal(old, new)


def test_blocks_are_transformer_layers_and_unfreezing_one_trains_the_top_one():
    model = kt.transfer(vit(), 3, dropout=0.0)
    blocks = model.get_layer("backbone").blocks
    # The patch embedding is the stem; the final norm goes with the top layer.
    assert [name for name, _ in blocks] == [
        "stem",
        "transformer_block_1",
        "transformer_block_2",
        "transformer_block_3",
    ]
    assert blocks[0][1] == ["vit_patching_and_embedding"] and blocks[-1][1][-1] == "ln"
    kt.unfreeze(model, blocks=1)
    trainable = {v.path.split("/")[-3] for v in model.trainable_weights if v.path.count("/") >= 2}
    assert {v.path.split("/")[0] for v in model.trainable_weights} == {"vit_encoder", "head"}
    assert "transformer_block_3" in trainable and "transformer_block_2" not in trainable
    backbone = model.get_layer("backbone")
    top, below = (
        backbone.get_layer("transformer_block_3"),
        backbone.get_layer("transformer_block_2"),
    )
    top_before, below_before = _weights(top), _weights(below)
    model.compile(keras.optimizers.SGD(0.5), LOSS, **EAGER)
    model.fit(X, Y, batch_size=8, epochs=1, verbose=0)
    assert any(not np.array_equal(a, b) for a, b in zip(top_before, _weights(top)))
    for a, b in zip(below_before, _weights(below)):
        np.testing.assert_array_equal(a, b)


def test_gradual_unfreezing_walks_the_transformer_layers_from_the_top(tmp_path):
    model = kt.transfer(vit(), 3, dropout=0.0)
    initial = model.get_weights()
    seen = []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            rows = kt.trainable_summary(self.model, print_fn=None)
            seen.append(
                [r["block"] for r in rows if r["trainable"] == "yes" and r["part"] != "head"]
            )

    def fit(model, epochs, initial_epoch=0, callbacks=()):
        if not model.compiled:  # a loaded checkpoint is, with its optimizer's state
            model.compile(keras.optimizers.Adam(1e-3), LOSS)
        model.run_eagerly = EAGER["run_eagerly"]
        callbacks = [kt.callbacks.GradualUnfreezing(verbose=0), Record(), *callbacks]
        model.fit(
            X,
            Y,
            batch_size=8,
            epochs=epochs,
            initial_epoch=initial_epoch,
            verbose=0,
            shuffle=False,
            callbacks=callbacks,
        )

    fit(model, epochs=3)
    assert seen == [
        [],
        ["transformer_block_3"],
        ["transformer_block_2", "transformer_block_3"],
    ]
    # Resumed from a checkpoint after epoch 2, as for a CNN: the same blocks
    # and the same weights as the uninterrupted fit.
    interrupted = kt.transfer(vit(), 3, dropout=0.0)
    interrupted.set_weights(initial)
    checkpoint = str(tmp_path / "epoch.keras")
    fit(interrupted, epochs=2, callbacks=[keras.callbacks.ModelCheckpoint(checkpoint)])
    resumed = keras.saving.load_model(checkpoint)
    # Frozen on load too: a transformer layer's sublayers, made in its
    # `build`, included.
    assert len(resumed.trainable_weights) == len(interrupted.trainable_weights)
    fit(resumed, epochs=3, initial_epoch=2)
    assert seen[-1] == ["transformer_block_2", "transformer_block_3"]
    for a, b in zip(resumed.weights, model.weights):
        np.testing.assert_allclose(as_numpy(a), as_numpy(b), rtol=1e-5, atol=1e-6, err_msg=a.path)


def test_lr_decay_scales_each_transformer_layer_by_its_depth():
    keras.utils.set_random_seed(0)
    reference = kt.transfer(vit(), 3, dropout=0.0, strategy="fine_tune")
    start = reference.get_weights()

    def one_step(decay):
        model = kt.transfer(vit(), 3, dropout=0.0, strategy="fine_tune")
        model.set_weights(start)
        # A large rate: the update dwarfs the weight it is added to, so the
        # float32 difference after - before keeps its digits.
        model.compile(keras.optimizers.SGD(1e4), LOSS, **EAGER)
        kt.unfreeze(model, "all", lr_decay=decay)
        model.fit(X, Y, batch_size=8, epochs=1, verbose=0, shuffle=False)
        backbone = model.get_layer("backbone")
        return {
            name: as_numpy(backbone.get_layer(name).weights[0]) - before
            for name, before in (
                ("transformer_block_3", start_weights["transformer_block_3"]),
                ("transformer_block_2", start_weights["transformer_block_2"]),
            )
        }

    start_weights = {
        name: as_numpy(reference.get_layer("backbone").get_layer(name).weights[0]).copy()
        for name in ("transformer_block_3", "transformer_block_2")
    }
    plain, decayed = one_step(1.0), one_step(0.5)
    # Plain SGD: the update is rate x multiplier x gradient, from the same
    # weights and batch, so update over plain update is the multiplier.
    ratios = {}
    for name in plain:
        moved = np.abs(plain[name]) > 1e-2
        assert moved.mean() > 0.5
        ratios[name] = decayed[name][moved] / plain[name][moved]
    np.testing.assert_allclose(ratios["transformer_block_3"], 0.5, rtol=1e-6)
    np.testing.assert_allclose(ratios["transformer_block_2"], 0.25, rtol=1e-6)
    np.testing.assert_allclose(
        ratios["transformer_block_3"] / ratios["transformer_block_2"], 2, rtol=1e-6
    )
    with pytest.raises(ValueError, match=r"`lr_decay` must be in \(0, 1\]. Received: lr_decay=0"):
        kt.unfreeze(reference, "all", lr_decay=0)
    with pytest.raises(ValueError, match=r"Received: lr_decay=1.5"):
        kt.unfreeze(reference, "all", lr_decay=1.5)


@runs_once_in(
    "torch"
)  # the recipe's multipliers; the update they make is checked in every backend above
def test_fine_tune_gives_transformer_layers_layer_wise_decay():
    model = kt.transfer(vit(), 3, dropout=0.0)
    model.compile("adam", LOSS, **EAGER)
    kt.fine_tune(model, (X, Y), epochs=1, freeze_epochs=0, batch_size=8, verbose=0)
    multipliers = model.optimizer.multipliers
    decay = kt.rate_multipliers.LAYER_DECAY
    assert multipliers["vit_encoder/transformer_block_3"] == pytest.approx(decay)
    assert multipliers["vit_encoder/transformer_block_2"] == pytest.approx(decay**2)
    assert multipliers["vit_patching_and_embedding"] == pytest.approx(decay**4)
    with pytest.raises(ValueError, match="this transformer has none.*Received: bn='train'"):
        kt.transfer(vit(), 3, bn="train")
    with pytest.raises(ValueError, match="Received: bn='train_affine'"):
        kt.unfreeze(model, "all", bn="train_affine")


@runs_once_in("torch")  # the command line's tests run in the torch process
def test_the_command_line_fits_a_preset_directory(tmp_path):
    from PIL import Image

    from keras_transfer.commands import cli

    vit().save_to_preset(str(tmp_path / "tiny_vit"))
    rng = np.random.default_rng(0)
    for split, count in (("train", 6), ("val", 3)):
        for name, color in (("blue", (30, 30, 200)), ("red", (200, 30, 30))):
            (tmp_path / "photos" / split / name).mkdir(parents=True)
            for i in range(count):
                pixels = np.clip(np.array(color) + rng.normal(0, 25, (32, 32, 3)), 0, 255)
                Image.fromarray(pixels.astype("uint8")).save(
                    tmp_path / "photos" / split / name / f"{i}.png"
                )
    argv = ["fit", tmp_path / "photos", "--backbone", tmp_path / "tiny_vit", "--image-size", "32"]
    argv += ["--strategy", "feature_extraction", "--epochs", "1", "--out", tmp_path / "run"]
    assert cli.main([str(a) for a in argv] + ["--quiet"]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert 0.0 <= metrics["accuracy"] <= 1.0 and len(metrics["history"]["val_accuracy"]) == 1


def test_token_poolings_on_a_hand_checked_input():
    # Tokens: class, 2 registers, then 2 patches; width 2.
    tokens = np.array([[[1, 2], [9, 9], [-9, -9], [3, 0], [5, 4]]], "float32")

    def pooled(mode):
        return as_numpy(kt.layers.TokenPooling(mode, prefix_tokens=3)(tokens))[0].tolist()

    assert pooled("avg") == [4.0, 2.0]
    assert pooled("max") == [5.0, 4.0]
    assert pooled("cls") == [1.0, 2.0]
    assert pooled("cls+avg") == [1.0, 2.0, 4.0, 2.0]
    backbone = dinov2()  # built once: each `transfer` unrolls its layers anew
    widths = {
        pooling: kt.transfer(backbone, pooling=pooling).output.shape[-1]
        for pooling in ("auto", "avg", "cls", "cls+avg")
    }
    assert widths == {"auto": 32, "avg": 16, "cls": 16, "cls+avg": 32}  # DINOv2: cls+avg
    assert kt.transfer(vit()).get_layer("backbone").get_layer("backbone_pool_0").mode == "cls"
    with pytest.raises(ValueError, match="pooling='cls' reads a transformer's class token"):
        kt.transfer(resnet(), input_shape=(32, 32, 3), pooling="cls")
    no_class = keras_hub.models.ViTBackbone(
        image_shape=(32, 32, 3),
        patch_size=4,
        num_layers=1,
        num_heads=2,
        hidden_dim=16,
        mlp_dim=32,
        use_class_token=False,
    )
    with pytest.raises(ValueError, match="vit has no class token"):
        kt.transfer(no_class, pooling="cls")


@runs_once_in("torch")  # the registry's tower and block rules
def test_a_two_tower_preset_gives_its_vision_tower(tmp_path):
    text = keras_hub.models.CLIPTextEncoder(**TINY_TEXT, embedding_dim=8)
    clip = keras_hub.models.CLIPBackbone(clip_vision(), text, projection_dim=8)
    clip.save_to_preset(str(tmp_path / "clip"))
    model = kt.transfer(str(tmp_path / "clip"), 3)
    blocks = model.get_layer("backbone").blocks
    assert [name for name, _ in blocks] == ["stem", "encoder_block_0", "encoder_block_1"]
    # Layer names carry the tower's name as a prefix.
    assert [n.split("encoder_")[-1] for n in blocks[0][1]] == ["embedding", "pre_layer_norm"]
    assert blocks[-1][1][-1].endswith("_layer_norm")
    assert model.output.shape[-1] == 3
    # SigLIP's attention-pooling head is the top block's; no class token.
    siglip = kt.transfer(siglip_vision(), 3).get_layer("backbone")
    assert [n.split("encoder_")[-1] for n in siglip.blocks[-1][1][-2:]] == [
        "post_layer_norm",
        "head",
    ]
    with pytest.raises(ValueError, match="siglip has no class token"):
        kt.transfer(siglip_vision(), 3, pooling="cls")


def test_keras_hub_cnns_blocks_are_their_residual_and_dense_blocks():
    model = kt.transfer(resnet(), 3, input_shape=(32, 32, 3))
    blocks = dict(model.get_layer("backbone").blocks)
    assert list(blocks) == ["stem", "stack0_block0", "stack0_block1", "stack1_block0"]
    assert blocks["stack0_block0"][-2:] == ["stack0_block0_add", "stack0_block0_out"]
    blocks = dict(kt.transfer(efficientnet(), input_shape=(32, 32, 3)).get_layer("backbone").blocks)
    assert list(blocks) == ["stem", "block1a", "block2a", "block2b", "top"]
    assert blocks["block2b"][-1] == "block2b_add"
    blocks = dict(kt.transfer(densenet(), input_shape=(32, 32, 3)).get_layer("backbone").blocks)
    assert list(blocks) == ["stem", "stack1_block1", "transition1", "stack2_block1"]
    assert blocks["stack2_block1"][-2:] == ["bn", "relu"]  # the final norm goes with the top


def test_a_local_preset_directory_brings_its_image_converter(tmp_path):
    backbone = vit()
    converter = keras_hub.layers.ImageConverter(
        image_size=(32, 32), scale=1 / 127.5, offset=-1.0, crop_to_aspect_ratio=False
    )
    backbone.save_to_preset(str(tmp_path / "tiny_vit"))
    converter.save_to_preset(str(tmp_path / "tiny_vit"))
    model = kt.transfer(str(tmp_path / "tiny_vit"), 3, strategy="fine_tune")
    inside = keras.Model(model.input, model.get_layer("preprocessing").output)
    np.testing.assert_allclose(as_numpy(inside(X)), as_numpy(converter(X)), rtol=1e-6, atol=1e-6)
    # The preset's weights, not random ones.
    np.testing.assert_array_equal(
        as_numpy(model.get_layer("backbone").get_layer("transformer_block_1").weights[0]),
        as_numpy(backbone.get_layer("vit_encoder").encoder_layers[0].weights[0]),
    )
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    np.testing.assert_array_equal(as_numpy(loaded(X)), as_numpy(model(X)))


@runs_once_in("torch")  # the feature store's key
def test_extraction_of_a_preset_keys_its_weights_and_its_image_converter(tmp_path):
    backbone = vit()
    backbone.save_to_preset(str(tmp_path / "p"))

    def key(scale):
        keras_hub.layers.ImageConverter(image_size=(32, 32), scale=scale).save_to_preset(
            str(tmp_path / "p")
        )
        feats = kt.extract_features(
            str(tmp_path / "p"), (X, Y), layers=["transformer_block_2", "last_conv"], progress=False
        )
        # Two taps: an intermediate transformer layer and the top, patch means.
        assert {k: v.shape for k, v in feats.features.items()} == {
            "transformer_block_2": (8, 16),
            "last_conv": (8, 16),
        }
        return feats.manifest["key"]["id"]

    assert key(1 / 255) == key(1 / 255) != key(1 / 127.5)


@runs_once_in("torch")  # argument checks, before any backend op
def test_bad_keras_hub_input(tmp_path):
    with pytest.raises(
        ValueError, match=r"cuts images into 4x4 patches.*input_shape=\(30, 30, 3\)"
    ):
        kt.transfer(vit(), 3, input_shape=(30, 30, 3))
    with pytest.raises(ValueError, match=r"Close preset names: \[.*'dinov2_small'"):
        kt.transfer("keras_hub:dinov2_smal", 3)
    text = keras_hub.models.BertBackbone(**TINY_TEXT)
    text.save_to_preset(str(tmp_path / "bert"))
    with pytest.raises(ValueError, match="is a BertBackbone, not an image backbone"):
        kt.transfer(str(tmp_path / "bert"), 3)


def _cls_and_patch_mean(tokens, prefix):
    tokens = as_numpy(tokens)
    return np.concatenate([tokens[:, 0], tokens[:, prefix:].mean(axis=1)], axis=-1)


@runs_once_in("torch")  # every backend builds DINOv3 above; the values once
def test_dinov3_and_dinov2_compute_what_keras_hub_computes_at_any_size(tmp_path):
    # DINOv3's layers take its rotary embeddings of the image as a side input.
    # A preset's layers carry its name as a prefix (dinov3_backbone_...).
    dinov3().save_to_preset(str(tmp_path / "dinov3"))
    dinov2().save_to_preset(str(tmp_path / "dinov2"))
    images = np.random.default_rng(0).normal(size=(2, 48, 48, 3)).astype("float32")
    for name in ("dinov3", "dinov2"):
        # At 48 px: KerasHub's own resizing (DINOv2 interpolates its position
        # embeddings when it loads them), the reference.
        reference = keras_hub.models.Backbone.from_preset(
            str(tmp_path / name), image_shape=(48, 48, 3)
        )
        model = kt.transfer(str(tmp_path / name), 3, input_shape=(48, 48, 3))
        backbone = model.get_layer("backbone")
        assert [block for block, _ in backbone.blocks] == ["stem", "layers_0", "layers_1"]
        np.testing.assert_allclose(
            as_numpy(backbone([images])),  # pooling "auto": the class token and patch mean
            _cls_and_patch_mean(reference({key: images for key in reference.input}), prefix=3),
            rtol=1e-4,
            atol=1e-5,
        )


def _policies(model):
    # In order, not by name: a reloaded layer's generated name can differ.
    # Keras saves no policy for a model container.
    return [
        (type(layer).__name__, layer.dtype_policy.name)
        for layer in _compat.flatten_layers(model)
        if not isinstance(layer, (keras.layers.InputLayer, keras.Model))
    ]


def test_mixed_precision_follows_the_cnn_rules_and_saves_without_custom_objects(tmp_path):
    model = kt.transfer(vit(), 3, strategy="fine_tune", mixed_precision="mixed_bfloat16")
    backbone = model.get_layer("backbone")
    assert backbone.get_layer("transformer_block_3").compute_dtype == "bfloat16"
    assert model.get_layer("preprocessing").compute_dtype == "float32"
    assert model.get_layer("head").get_layer("classifier").compute_dtype == "float32"
    assert {v.dtype for v in model.weights} == {"float32"}
    assert model.output.dtype == "float32"
    model.save(tmp_path / "vit.keras")
    loaded = keras.saving.load_model(tmp_path / "vit.keras")  # no custom_objects
    # Every layer's policy and every weight: the same model. (Predictions
    # after a round trip are compared in float32 above; a bfloat16 step is
    # tested on CNNs, and costs JAX a compile per op here.)
    assert _policies(loaded) == _policies(model)
    for a, b in zip(loaded.weights, model.weights):
        np.testing.assert_array_equal(as_numpy(a), as_numpy(b), err_msg=a.path)


@runs_once_in("torch")  # the resampling is NumPy
def test_a_learned_position_table_is_resampled_as_timm_does():
    import torch  # timm's reference: torch's bicubic, align_corners=False

    backbone = vit()
    model = kt.transfer(backbone, 3, input_shape=(48, 40, 3))  # 8x8 patches -> 12x10
    assert model.predict(pixels(2, 48)[:, :, :40], verbose=0).shape == (2, 3)
    path = "vit_patching_and_embedding/position_embedding/embeddings"
    (old,) = [as_numpy(w) for w in backbone.weights if w.path == path]
    (new,) = [as_numpy(w) for w in model.get_layer("backbone").weights if w.path == path]
    grid = torch.tensor(old[1:]).reshape(1, 8, 8, 16).permute(0, 3, 1, 2)
    expected = torch.nn.functional.interpolate(grid, (12, 10), mode="bicubic", align_corners=False)
    np.testing.assert_array_equal(new[0], old[0])  # the class token's row
    np.testing.assert_allclose(
        new[1:], expected.permute(0, 2, 3, 1).reshape(120, 16).numpy(), rtol=1e-5, atol=1e-6
    )
    # SigLIP's table (no class token) too.
    assert kt.transfer(siglip_vision(), 3, input_shape=(48, 48, 3)).output.shape == (None, 3)


# Grad-CAM's three gradient paths are tested on every backend in
# test_inspection; tracing the ViT's gradient took JAX 11 s, TensorFlow 1.5 s.
@runs_once_in("tensorflow")
def test_grad_cam_reads_a_vision_transformer():
    """The class token pools a ViT: the map is taken where the patch tokens
    enter the last block, so it is not zero everywhere."""
    keras.utils.set_random_seed(0)
    model = kt.transfer(vit(), 3, weights=None, input_shape=(32, 32, 3))
    maps = kt.inspection.grad_cam(model, X[:2])
    assert maps.shape == (2, 32, 32) and np.all(np.isfinite(maps))
    assert maps.max() > 0.5 and maps.min() >= 0.0
