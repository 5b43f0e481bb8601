"""A folder of labelled photos (one sub-folder per class), decoded once."""

import concurrent.futures
import dataclasses
import os
import pathlib

import keras
import numpy as np

from keras_transfer.images.decoding import MAX_IMAGE_PIXELS, read_image

__all__ = [
    "ImageFolder",
    "MAX_IMAGE_PIXELS",
    "MAX_IMAGE_SIZE",
    "SPLITS",
    "check_image_size",
    "image_files",
    "read_image",
    "scan",
    "split_folders",
    "split_mask",
    "train_val_files",
]


@dataclasses.dataclass
class ImageFolder:
    """Decoded images of a class-per-folder directory.

    Attributes:
        images: `uint8` array `(N, height, width, 3)`: a quarter of the bytes
            of float32; the models cast and preprocess inside.
        labels: integer labels `(N,)`, indices into `class_names`.
        class_names: sorted sub-folder names.
        paths: the decoded files, in order.
        skipped: `"name (reason)"` for each file that could not be decoded.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: list
    paths: list
    skipped: list

    @classmethod
    def load(cls, root, image_size, class_names=None, progress=False):
        """Decodes every image under `root/<class>/`, resized to `image_size`.

        Example:

        >>> import pathlib, tempfile
        >>> from PIL import Image
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> for name in ("ants", "bees"):
        ...     (root / name).mkdir()
        ...     Image.new("RGB", (40, 30)).save(root / name / "a.png")
        >>> folder = keras_transfer.image_folder.ImageFolder.load(root, (16, 16))
        >>> folder.images.shape, folder.labels.tolist(), folder.class_names
        ((2, 16, 16, 3), [0, 1], ['ants', 'bees'])

        Args:
            root: the directory.
            image_size: `(height, width)`.
            class_names: the classes expected, in label order (a model's);
                a sub-folder outside them is an error. Default: the
                sub-folders, sorted.
            progress: show a progress bar.

        Raises:
            FileNotFoundError: `root` is not a directory.
            ValueError: no class sub-folders, an empty class, a class the
                model does not know, or no image that decodes.
        """
        class_names, paths, labels = scan(root, class_names, argument="root")
        return cls._decode(class_names, paths, labels, image_size, progress, root)

    @classmethod
    def _decode(cls, class_names, paths, labels, image_size, progress, root):
        image_size = check_image_size(image_size)
        files = list(zip(paths, labels))
        bar = keras.utils.Progbar(len(files), unit_name="image") if progress else None
        images, labels, paths, skipped = [], [], [], []
        # Threads decode in parallel: libjpeg-turbo and PIL release the GIL.
        with concurrent.futures.ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
            futures = [pool.submit(read_image, path, image_size) for path, _ in files]
            for i, ((path, label), future) in enumerate(zip(files, futures)):
                try:
                    images.append(future.result())
                    labels.append(label)
                    paths.append(path)
                except Exception as error:  # PIL raises many types for bad files
                    skipped.append(f"{path.name} ({type(error).__name__})")
                if bar is not None and (i + 1 == len(files) or i % 16 == 0):
                    bar.update(i + 1)
        if not images:
            raise ValueError(
                f"No file under {str(root)!r} decodes as an image. Skipped: {skipped[:5]}"
            )
        return cls(np.stack(images), np.array(labels), class_names, paths, skipped)

    @classmethod
    def train_val(cls, root, image_size, val_dir=None, val_split=0.2, seed=0, progress=False):
        """`(train, val)` of the files `train_val_files` picks, decoded."""
        names, train, val = train_val_files(root, val_dir, val_split, seed)
        return tuple(
            cls._decode(names, paths, labels, image_size, progress, root)
            for paths, labels in (train, val)
        )


def train_val_files(root, val_dir=None, val_split=0.2, seed=0, class_names=None):
    """`(class_names, (train_paths, train_labels), (val_paths, val_labels))`
    from `root/train` and `root/val` (or `validation`), from `root` and
    `val_dir`, or from `root` split `val_split` of each class's files
    (`split_mask`). `keras-transfer fit` draws a run's split here, and
    `keras-transfer export` finds it again, with the run's `class_names`."""
    root = pathlib.Path(root)
    splits = split_folders(root) if val_dir is None and root.is_dir() else {}
    if splits:
        val_dir = splits.get("val", splits.get("validation"))
        if val_dir is None:
            raise ValueError(
                f"{str(root)!r} has train/ but no val/ folder: add one, or "
                "give the train folder and a validation split"
            )
        root = root / "train"
    names, paths, labels = scan(root, class_names, argument="root")
    if len(names) < 2:
        raise ValueError(
            f"{str(root)!r} has one class folder ({names[0]!r}): a classifier needs at least two"
        )
    labels = np.array(labels)
    if val_dir is not None:
        _, val_paths, val_labels = scan(val_dir, names, argument="val_dir")
        return names, (paths, labels), (val_paths, np.array(val_labels))
    val = split_mask(labels, val_split, seed)
    if val.all():
        raise ValueError(
            f"Too few images to hold out a validation split. Received: "
            f"{len(labels)} images, val_split={val_split}"
        )
    pick = lambda keep: [p for p, k in zip(paths, keep) if k]  # noqa: E731
    return names, (pick(~val), labels[~val]), (pick(val), labels[val])


SPLITS = ("train", "val", "validation", "test")
# Larger images take gigabytes each to decode and resize; no backbone in the
# registry takes more than 600 px.
MAX_IMAGE_SIZE = 4096


def split_mask(labels, fraction, seed=0):
    """The validation rows of a stratified split: `fraction` of each class
    (at least one), drawn with `seed`. `train_val_files` and `export`'s
    parity check (which finds a run's validation images again) share it."""
    if not 0 < fraction < 1:
        raise ValueError(f"`val_split` must be between 0 and 1. Received: {fraction!r}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    val = np.zeros(len(labels), bool)
    for label in np.unique(labels):
        index = rng.permutation(np.flatnonzero(labels == label))
        val[index[: max(1, round(fraction * len(index)))]] = True
    return val


def image_files(directory):
    """The files under `directory`, sorted, skipping hidden files and any
    file inside a hidden folder (`.ipynb_checkpoints`, `.git`, ...)."""
    directory = pathlib.Path(directory)
    return sorted(
        path
        for path in directory.rglob("*")
        if path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(directory).parts)
    )


def split_folders(root):
    """`{split: path}` when `root` holds split folders (`train/`, `val/`, ...)
    of class folders; `{}` when its sub-folders are the classes."""
    root = pathlib.Path(root)
    folders = {p.name: p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")}
    if (
        "train" in folders
        and set(folders) <= set(SPLITS)
        and any(p.is_dir() and not p.name.startswith(".") for p in folders["train"].iterdir())
    ):
        return folders
    return {}


def scan(root, class_names=None, argument="data"):
    """The one reading of a class-per-folder directory, used by `ImageFolder`,
    `extract_features` and the command line.

    Classes are the visible sub-folders of `root`, sorted; hidden folders and
    files are skipped; every file below a class folder (at any depth) is one
    image of that class. A root of split folders (`train/`, `val/`) is
    refused: pass one split.

    Args:
        root: the directory.
        class_names: the classes expected, in label order; a sub-folder
            outside them is an error. Default: the sub-folders, sorted.
        argument: the argument's name, for error messages.

    Returns:
        `(class_names, paths, labels)`.
    """
    root = pathlib.Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"No image directory at {str(root)!r}. Received: {argument}={str(root)!r}"
        )
    splits = split_folders(root)
    if splits:
        raise ValueError(
            f"`{argument}` directory {str(root)!r} holds split folders {sorted(splits)}, each "
            f"of class folders: pass one split, e.g. {argument}={str(root / 'train')!r}. "
            f"Received: {argument}={str(root)!r}"
        )
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not found:
        raise ValueError(
            f"`{argument}` directory {str(root)!r} has no class sub-folders (one folder of "
            f"images per class). Received: {sorted(p.name for p in root.iterdir())[:10]}"
        )
    class_names = list(class_names) if class_names is not None else found
    unknown = sorted(set(found) - set(class_names))
    if unknown:
        raise ValueError(
            f"{str(root)!r} holds classes the model does not know: {unknown}. "
            f"Allowed: {class_names}"
        )
    real = {}
    for name in found:
        # A class folder that is a link to another: its images under two labels.
        other = real.setdefault((root / name).resolve(), name)
        if other != name:
            raise ValueError(
                f"Class folders {other!r} and {name!r} of {str(root)!r} are the same folder "
                f"(one is a link to the other): its images would be trained under two "
                f"labels. Remove the link. Received: {argument}={str(root)!r}"
            )
    paths, labels = [], []
    for name in found:
        files = image_files(root / name)
        if not files:
            raise ValueError(f"Class folder {str(root / name)!r} is empty. Received: 0 files")
        paths += files
        labels += [class_names.index(name)] * len(files)
    return class_names, paths, labels


def check_image_size(size, argument="image_size"):
    """`(height, width)` of positive ints no larger than `MAX_IMAGE_SIZE`."""
    size = tuple(size)
    if len(size) != 2 or not all(
        isinstance(v, (int, np.integer)) and 1 <= v <= MAX_IMAGE_SIZE for v in size
    ):
        raise ValueError(
            f"`{argument}` must be (height, width), each from 1 to {MAX_IMAGE_SIZE} pixels. "
            f"Received: {argument}={size!r}"
        )
    return tuple(int(v) for v in size)
