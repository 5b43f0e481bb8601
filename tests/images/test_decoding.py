"""The one decoder: libjpeg-turbo's scaled decoding for JPEGs, PIL for the
rest and for what libjpeg-turbo refuses, on files the tests make. Each case
takes milliseconds, so every backend's process runs them."""

import warnings

import numpy as np
import pytest
import simplejpeg
from PIL import Image

import keras_transfer as kt
from keras_transfer.features import sources
from keras_transfer.images import decoding as image_decoding
from keras_transfer.images.decoding import read_image
from tests.features.feature_models import _class_folder, _feature_model


def _photo(path, mode="RGB", size=(320, 256), **save):
    """A smooth gradient with noise, photo-like, saved as `path`."""
    rows, cols = np.mgrid[0 : size[1], 0 : size[0]]
    noise = np.random.default_rng(0).normal(0, 8, (size[1], size[0], 3))
    rgb = np.stack([rows * 0.9, cols * 0.7, (rows + cols) * 0.4], -1) + noise
    image = Image.fromarray(np.clip(rgb, 0, 255).astype("uint8")).convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, quality=90, **save)
    return path


def _difference(path, size=(64, 64)):
    """Mean |fast - full| in levels, and the fast path's pixels."""
    fast = read_image(path, size)
    full = read_image(path, size, reduced_decoding=False)
    assert fast.shape == full.shape == (*size, 3) and fast.dtype == np.uint8
    return np.abs(fast.astype(float) - full).mean(), fast


@pytest.fixture
def decoded_by_libjpeg_turbo(monkeypatch):
    """Counts the files that libjpeg-turbo decodes (and that it scales)."""
    seen = []
    decode = simplejpeg.decode_jpeg

    def counting(data, *args, **kwargs):
        image = decode(data, *args, **kwargs)
        seen.append(image.shape[:2] < simplejpeg.decode_jpeg_header(data)[:2])
        return image

    monkeypatch.setattr(simplejpeg, "decode_jpeg", counting)
    return seen


def test_a_jpeg_is_decoded_at_a_reduced_scale_close_to_a_full_decode(
    tmp_path, decoded_by_libjpeg_turbo
):
    difference, _ = _difference(_photo(tmp_path / "photo.jpg"))
    assert decoded_by_libjpeg_turbo == [True]  # 256 rows at 2/8: 64, the target
    assert 0 < difference < 3  # another resampling, not another image


def test_progressive_and_grayscale_jpegs_take_the_fast_path(tmp_path, decoded_by_libjpeg_turbo):
    difference, _ = _difference(_photo(tmp_path / "p.jpg", progressive=True))
    assert difference < 3
    difference, gray = _difference(_photo(tmp_path / "g.jpg", mode="L"))
    assert difference < 3
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
    assert decoded_by_libjpeg_turbo == [True, True]


def test_the_exif_orientation_is_applied_on_the_fast_path(tmp_path, decoded_by_libjpeg_turbo):
    # Red on the left, blue on the right; EXIF 6: rotate 90 degrees clockwise.
    pixels = np.zeros((100, 200, 3), "uint8")
    pixels[:, :100] = (255, 0, 0)
    pixels[:, 100:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(pixels).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    difference, image = _difference(tmp_path / "phone.jpg", (40, 20))
    assert decoded_by_libjpeg_turbo == [True]
    assert image[:18, :, 0].mean() > 200 and image[22:, :, 2].mean() > 200  # red on top
    assert difference < 3


def test_an_exif_segment_after_another_app1_is_found(tmp_path, decoded_by_libjpeg_turbo):
    pixels = np.zeros((100, 200, 3), "uint8")
    pixels[:, :100] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(pixels).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    # An XMP packet, also APP1, ahead of the EXIF one, as some editors write.
    xmp = b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta/>"
    segment = b"\xff\xe1" + (len(xmp) + 2).to_bytes(2, "big") + xmp
    data = (tmp_path / "phone.jpg").read_bytes()
    (tmp_path / "phone.jpg").write_bytes(data[:2] + segment + data[2:])
    image = read_image(tmp_path / "phone.jpg", (40, 20))
    assert decoded_by_libjpeg_turbo == [True]
    assert image[:18, :, 0].mean() > 200 and image[22:, :, 0].mean() < 50  # red on top


def test_a_jpeg_above_the_pixel_limit_is_refused_before_decoding(
    tmp_path, monkeypatch, decoded_by_libjpeg_turbo
):
    monkeypatch.setattr(image_decoding, "MAX_IMAGE_PIXELS", 100 * 100)
    path = _photo(tmp_path / "big.jpg", size=(120, 100))
    with pytest.raises(ValueError, match="120 x 100 pixels, above the limit of 10,000"):
        read_image(path, (16, 16))
    assert decoded_by_libjpeg_turbo == []


def test_a_cmyk_jpeg_and_a_png_go_through_pil_unchanged(tmp_path, decoded_by_libjpeg_turbo):
    for path in (_photo(tmp_path / "c.jpg", mode="CMYK"), _photo(tmp_path / "p.png")):
        with Image.open(path) as image:
            image.draft(image.mode, (64, 64))  # PIL's own reduced decoding, as before
            expected = np.asarray(image.convert("RGB").resize((48, 64), Image.BILINEAR))
        np.testing.assert_array_equal(read_image(path, (64, 48)), expected)
    assert decoded_by_libjpeg_turbo == []  # neither reached libjpeg-turbo


def test_a_truncated_jpeg_is_skipped_with_one_warning(tmp_path):
    root = tmp_path / "photos"
    for name in ("ants", "bees"):
        _photo(root / name / "whole.jpg", size=(64, 48))
    whole = (root / "bees" / "whole.jpg").read_bytes()
    (root / "bees" / "cut.jpg").write_bytes(whole[: len(whole) // 2])
    stream = kt.ImageStream(root, (32, 32), batch_size=8)
    with pytest.warns(UserWarning, match="Skipped a file that could not be decoded") as caught:
        images, labels = stream[0]
    assert len(caught) == 1 and "cut.jpg" in str(caught[0].message)
    assert images.shape == (2, 32, 32, 3) and labels.tolist() == [0, 1]
    assert stream.skipped == [f"{root / 'bees' / 'cut.jpg'} (OSError)"]


def test_without_simplejpeg_pil_reads_jpegs_with_a_one_line_note(tmp_path, monkeypatch):
    path = _photo(tmp_path / "photo.jpg")
    fast = read_image(path, (64, 64))
    monkeypatch.setattr(image_decoding, "simplejpeg", None)
    monkeypatch.setattr(image_decoding, "_warned", [])
    with pytest.warns(UserWarning, match=r"simplejpeg is not installed.*slower") as caught:
        slow = read_image(path, (64, 64))
        read_image(path, (64, 64))  # once a process
    assert len(caught) == 1 and "\n" not in str(caught[0].message)
    assert np.abs(slow.astype(float) - fast).mean() < 3
    assert image_decoding.decoder().endswith("draft")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_image(path, (64, 64), reduced_decoding=False)  # no note: not the fast path


def test_the_decoder_names_libjpeg_turbo_and_the_versions():
    import PIL

    name = image_decoding.decoder()
    assert f"simplejpeg {simplejpeg.__version__}" in name and PIL.__version__ in name
    assert image_decoding.decoder(reduced_decoding=False) == f"PIL {PIL.__version__}"


def test_a_store_made_with_other_pixels_never_answers(tmp_path, monkeypatch):
    model = _feature_model()
    photos = tmp_path / "photos"
    _class_folder(photos, ["a", "b"])
    # A store made before this decoder: its key said "decoding": "reduced".
    monkeypatch.setattr(sources, "decoder", lambda: "reduced")
    kt.extract_features(model, photos, cache=tmp_path / "s", progress=False)
    monkeypatch.undo()
    with pytest.raises(ValueError, match="differ in: data"):
        kt.extract_features(model, photos, cache=tmp_path / "s", progress=False)


def test_read_images_skips_a_bad_file_with_one_warning_and_keeps_the_labels(tmp_path):
    good, png = _photo(tmp_path / "a.jpg", size=(64, 48)), _photo(tmp_path / "c.png", size=(64, 48))
    bad = tmp_path / "b.jpg"
    bad.write_bytes(b"not a photo")
    with pytest.warns(UserWarning, match="Skipped a file that could not be decoded") as caught:
        images, labels = image_decoding.read_images([good, bad, png], (16, 16), labels=[0, 1, 2])
    assert len(caught) == 1 and "b.jpg" in str(caught[0].message)
    assert images.shape == (2, 16, 16, 3) and labels.tolist() == [0, 2]
    with pytest.warns(UserWarning, match="b.jpg"):
        assert image_decoding.read_images([bad], (16, 16)) == (None, None)
