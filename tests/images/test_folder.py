"""The one folder scanner and image reader, used by ImageFolder, extraction
and the command line: hidden folders, empty classes, split roots, EXIF
orientation and 16-bit images. The scanner and reader are PIL and file work,
the same under every backend, so these run once, in one process."""

import keras
import numpy as np
import pytest
from PIL import Image

import keras_transfer as kt
from keras_transfer.images.folder import MAX_IMAGE_SIZE, read_image, scan
from tests.conftest import runs_once_in

# The scanner and reader are PIL and file work: one process runs them all.
once = runs_once_in("tensorflow")


def _photo(path, color, size=(12, 10)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


def _pixels_model(size=(8, 8)):
    """A feature model whose features are the pixels it was given."""
    inputs = keras.Input(size + (3,))
    return keras.Model(inputs, keras.layers.Flatten()(inputs))


def _oriented_jpeg(path):
    """A 20x10 (w x h) JPEG, red left and blue right, whose EXIF says: rotate
    90 degrees clockwise to display (orientation 6): upright it is 10 wide
    and 20 tall, red on top."""
    pixels = np.zeros((10, 20, 3), "uint8")
    pixels[:, :10] = (255, 0, 0)
    pixels[:, 10:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, exif=exif, quality=100)


def _red_on_top(image):
    half = image.shape[0] // 2
    return image[:half, ..., 0].mean() > 200 and image[half:, ..., 2].mean() > 200


@once
def test_hidden_folders_and_files_are_skipped_the_same_way_everywhere(tmp_path):
    for name, color in (("ants", "red"), ("bees", "blue")):
        _photo(tmp_path / name / "0.png", color)
        _photo(tmp_path / name / ".ipynb_checkpoints" / "0-checkpoint.png", "green")
    _photo(tmp_path / ".ipynb_checkpoints" / "stray.png", "green")
    (tmp_path / "ants" / ".DS_Store").write_bytes(b"\0")
    names, paths, labels = scan(tmp_path)
    assert names == ["ants", "bees"] and labels == [0, 1] and len(paths) == 2
    folder = kt.ImageFolder.load(tmp_path, (8, 8))
    feats = kt.extract_features(_pixels_model(), tmp_path, progress=False)
    assert feats.class_names == folder.class_names == ["ants", "bees"]
    assert feats.labels.tolist() == folder.labels.tolist() == [0, 1]
    np.testing.assert_array_equal(feats.x, folder.images.reshape(2, -1))


@once
def test_an_empty_class_folder_is_refused_by_every_reader(tmp_path):
    _photo(tmp_path / "ants" / "0.png", "red")
    (tmp_path / "bees").mkdir()
    with pytest.raises(ValueError, match="bees' is empty"):
        kt.ImageFolder.load(tmp_path, (8, 8))
    with pytest.raises(ValueError, match="bees' is empty"):
        kt.extract_features(_pixels_model(), tmp_path, progress=False)


@once
def test_a_root_of_split_folders_is_read_by_class_not_by_split(tmp_path):
    for split in ("train", "val"):
        for name, color in (("ants", "red"), ("bees", "blue")):
            _photo(tmp_path / split / name / "0.png", color)
    with pytest.raises(ValueError, match=r"split folders \['train', 'val'\].*data='.*train'"):
        kt.extract_features(_pixels_model(), tmp_path, progress=False)
    feats = kt.extract_features(_pixels_model(), tmp_path / "train", progress=False)
    assert feats.class_names == ["ants", "bees"]
    train, val = kt.ImageFolder.train_val(tmp_path, (8, 8))
    assert train.class_names == val.class_names == ["ants", "bees"]
    assert val.labels.tolist() == [0, 1]


@once
def test_exif_orientation_is_applied_by_the_reader_and_image_folder(tmp_path):
    _oriented_jpeg(tmp_path / "up" / "phone.jpg")
    _photo(tmp_path / "other" / "0.png", "green")
    assert _red_on_top(read_image(tmp_path / "up" / "phone.jpg", (20, 10)))
    folder = kt.ImageFolder.load(tmp_path, (20, 10))
    assert _red_on_top(folder.images[list(folder.class_names).index("up")])


@once
def test_exif_orientation_is_applied_in_extraction(tmp_path):
    _oriented_jpeg(tmp_path / "up" / "phone.jpg")
    _photo(tmp_path / "other" / "0.png", "green")
    feats = kt.extract_features(_pixels_model((20, 10)), tmp_path, progress=False)
    assert _red_on_top(np.asarray(feats.x[feats.class_names.index("up")]).reshape(20, 10, 3))


@once
def test_16_bit_pngs_are_scaled_to_8_bits_not_saturated(tmp_path):
    ramp = np.linspace(0, 65535, 32 * 32).reshape(32, 32).astype("uint16")
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as check:
        assert check.mode.startswith("I")  # PIL reads it as 16-bit
    image = read_image(tmp_path / "deep.png", (32, 32))
    assert image.dtype == np.uint8 and image.shape == (32, 32, 3)
    assert (image == 255).mean() < 0.01  # was 99.6% before the fix
    np.testing.assert_allclose(image[..., 0], np.round(ramp / 257.0), atol=1)


@once
def test_image_size_is_checked_before_decoding(tmp_path):
    _photo(tmp_path / "a" / "0.png", "red")
    for size in ((MAX_IMAGE_SIZE + 1, 8), (0, 8), (8,)):
        with pytest.raises(ValueError, match=rf"image_size.*{MAX_IMAGE_SIZE}.*Received"):
            kt.ImageFolder.load(tmp_path, size)
