"""The one decoder of every image the library reads: a JPEG through
libjpeg-turbo's scaled IDCT (`simplejpeg`), anything else through PIL.

libjpeg-turbo decodes a JPEG directly at M/8 of its size (M from 1 to 8),
averaging in the DCT: the smallest such scale not below the target's side
costs a fraction of a full decode, and PIL's antialiased bilinear resize
(the kernel of the full-decode reference) takes it to the target. The
pixels then differ from a full decode by about 2 levels of 255, Keras's own
loader's by 1 to 4 (`bench/decode.py`). A PNG, a 16-bit or palette image, a
CMYK JPEG and any file libjpeg-turbo refuses go through PIL, as before.
Without `simplejpeg` installed, JPEGs go through PIL's own reduced decoding
(`draft`), slower.
"""

import io
import pathlib
import warnings

import numpy as np

try:
    import simplejpeg
except ImportError:  # a dependency, but PIL reads every format without it
    simplejpeg = None

__all__ = ["MAX_IMAGE_PIXELS", "decoder", "read_image", "read_images", "read_or_skip"]

# Larger files are refused before decoding: 50 megapixels is a 150 MB RGB
# array, above any phone's 48-megapixel photo and below PIL's own 89-million
# warning.
MAX_IMAGE_PIXELS = 50_000_000
# PIL's `draft` against libjpeg-turbo on one core (`bench/decode.py`: 1.1x
# on the ants/bees photos, 1.4x and 1.5x on dtd10): the note given without it.
_PIL_SLOWDOWN = "up to 1.5x"
_warned = []


def decoder(reduced_decoding=True):
    """The decoder in use and its versions, as feature stores and a run's
    `config.json` record it: pixels from another decoder are other pixels.

    Example:

    >>> keras_transfer.image_decoding.decoder(reduced_decoding=False)[:4]
    'PIL '
    """
    import PIL

    if not reduced_decoding:
        return f"PIL {PIL.__version__}"
    if simplejpeg is None:
        return f"PIL {PIL.__version__} draft"
    return f"libjpeg-turbo (simplejpeg {simplejpeg.__version__}), PIL {PIL.__version__} resize"


def read_image(path, size, reduced_decoding=True):
    """One file as a `uint8` RGB array of `size` `(height, width)`.

    The EXIF orientation is applied (a phone photo taken upright reads
    upright), and 16-bit images are scaled to 8 bits, not clipped. With
    `reduced_decoding` (the library's reader everywhere), a JPEG is decoded
    by libjpeg-turbo at the smallest M/8 of its size still at least the
    target's larger side; without it, PIL decodes it in full, the reference
    the fast path is measured against.

    Example:

    >>> import pathlib, tempfile
    >>> from PIL import Image
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "photo.jpg"
    >>> Image.new("RGB", (400, 300), "red").save(path)
    >>> image = keras_transfer.image_decoding.read_image(path, (32, 48))
    >>> image.shape, image.dtype.name, int(image[0, 0, 0]) > 250
    ((32, 48, 3), 'uint8', True)

    Args:
        path: the file.
        size: `(height, width)` of the array.
        reduced_decoding: decode a JPEG at a reduced scale (libjpeg-turbo,
            or PIL's `draft` without `simplejpeg`).

    Raises:
        ValueError: the image is above `MAX_IMAGE_PIXELS`.
        Exception: whatever PIL raises for a file it cannot decode.
    """
    path = pathlib.Path(path)
    if reduced_decoding and simplejpeg is not None:
        data = path.read_bytes()
        if data[:3] == b"\xff\xd8\xff":
            image = _libjpeg_turbo(data, path, size)
            if image is not None:
                return image
        # From the file again (it is in the page cache): PIL's errors name it.
        return _pil(path, size, reduced_decoding)
    if reduced_decoding and not _warned:
        _warned.append(True)
        warnings.warn(
            f"simplejpeg is not installed: JPEGs decode through PIL, {_PIL_SLOWDOWN} "
            "slower. `pip install simplejpeg` for libjpeg-turbo's scaled decoding.",
            stacklevel=2,
        )
    return _pil(path, size, reduced_decoding)


def read_or_skip(path, size, reduced_decoding=True, skipped=None):
    """`read_image`, or `None` with a warning for a file that does not
    decode (deleted, truncated, not an image), listed in `skipped` as
    `"path (ErrorType)"`: every reader of a folder skips a bad file so.

    Example:

    >>> import pathlib, tempfile, warnings
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "notes.jpg"
    >>> _ = path.write_text("not a photo")
    >>> skipped = []
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     image = keras_transfer.image_decoding.read_or_skip(path, (8, 8), skipped=skipped)
    >>> image is None, skipped[0].endswith("notes.jpg (UnidentifiedImageError)")
    (True, True)
    """
    try:
        return read_image(path, size, reduced_decoding)
    except Exception as error:  # PIL raises many types for bad files
        if skipped is not None:
            skipped.append(f"{path} ({type(error).__name__})")
        warnings.warn(
            f"Skipped a file that could not be decoded: {path} ({type(error).__name__}: {error})",
            stacklevel=2,
        )
        return None


def read_images(paths, size, labels=None, reduced_decoding=True):
    """`(images, labels)` of the `paths` that decode, a bad file skipped
    with a warning (`read_or_skip`); `images` is `None` when none does.

    Example:

    >>> import pathlib, tempfile
    >>> from PIL import Image
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> Image.new("RGB", (20, 10), "blue").save(folder / "a.png")
    >>> images, labels = keras_transfer.image_decoding.read_images(
    ...     [folder / "a.png"], (8, 8), labels=[3]
    ... )
    >>> images.shape, labels.tolist()
    ((1, 8, 8, 3), [3])
    """
    images = [read_or_skip(path, size, reduced_decoding) for path in paths]
    kept = [i for i, image in enumerate(images) if image is not None]
    stacked = np.stack([images[i] for i in kept]) if kept else None
    return stacked, None if labels is None else np.asarray(labels)[kept]


def _libjpeg_turbo(data, path, size):
    """The JPEG's pixels through libjpeg-turbo, or `None` for PIL to read it
    (CMYK, or anything libjpeg-turbo refuses or warns about)."""
    from PIL import Image

    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None
    _check_pixels(width, height, path)
    if colorspace not in ("YCbCr", "Gray", "RGB"):  # CMYK, YCCK: PIL converts them
        return None
    side = max(size)
    try:
        # A square request: the EXIF rotation, applied after, swaps the sides.
        array = simplejpeg.decode_jpeg(data, "rgb", min_height=side, min_width=side)
    except ValueError:  # strict: a truncated or corrupt file is PIL's to judge
        return None
    turn = _TURNS.get(_orientation(data))
    if turn is None and array.shape[:2] == tuple(size):
        # A scale that lands on the size (dtd10's 256 px squares at 7/8 and
        # 5/8): PIL would copy them unchanged, in nearly the time of the decode.
        return array
    image = Image.fromarray(array)
    if turn is not None:
        image = image.transpose(turn)
    return np.asarray(image.resize(tuple(size)[::-1], Image.BILINEAR))


def _orientation(data):
    """The EXIF orientation, parsed by PIL only when the header's segments
    hold an EXIF one (most files have none; finding it with `bytes.find`
    over the file cost 2.5% of a read)."""
    from PIL import Image

    at = 2  # after the SOI marker
    while at + 10 <= len(data) and data[at] == 0xFF:
        marker = data[at + 1]
        if marker == 0xFF:  # a fill byte before a marker
            at += 1
            continue
        if marker == 0xDA:  # start of scan: the header is over
            break
        if marker == 0xE1 and data[at + 4 : at + 10] == b"Exif\x00\x00":
            with Image.open(io.BytesIO(data)) as image:
                return image.getexif().get(0x0112, 1)
        at += 2 + int.from_bytes(data[at + 2 : at + 4], "big")
    return 1


def _pil(path, size, reduced_decoding):
    from PIL import Image, ImageOps

    with Image.open(path) as image:  # reads the header only
        if reduced_decoding:
            side = max(size)
            image.draft(image.mode, (side, side))  # a no-op for formats other than JPEG
        _check_pixels(image.width, image.height, path)
        # In place, and no conversion of an RGB image: the two copies took
        # 0.6 ms of a 500 x 375 photo's 3.4 ms on one core.
        ImageOps.exif_transpose(image, in_place=True)
        if image.mode.startswith("I"):  # 16-bit PNG or TIFF ("I;16", or "I" holding 16 bits)
            array = np.asarray(image, dtype="float64")
            if image.mode.startswith("I;16") or array.max() > 255:
                array = array / 257.0
            image = Image.fromarray(np.clip(np.round(array), 0, 255).astype("uint8"), "L")
        if image.mode != "RGB":
            image = image.convert("RGB")
        return np.asarray(image.resize(tuple(size)[::-1], Image.BILINEAR))


def _check_pixels(width, height, path):
    if width * height > MAX_IMAGE_PIXELS:
        # A small file can decode to gigabytes (a 140 kB PNG of 12,000 x
        # 12,000 pixels took 814 MB).
        raise ValueError(
            f"{path.name} is {width} x {height} pixels, above the limit of "
            f"{MAX_IMAGE_PIXELS:,} pixels (image_decoding.MAX_IMAGE_PIXELS): not decoded. "
            f"Resize it first."
        )


def _transposes():
    from PIL import Image

    turn = Image.Transpose
    # PIL's own ImageOps.exif_transpose table.
    return {
        2: turn.FLIP_LEFT_RIGHT,
        3: turn.ROTATE_180,
        4: turn.FLIP_TOP_BOTTOM,
        5: turn.TRANSPOSE,
        6: turn.ROTATE_270,
        7: turn.TRANSVERSE,
        8: turn.ROTATE_90,
    }


_TURNS = _transposes()
