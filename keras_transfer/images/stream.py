"""A folder of photos as a stream of uint8 batches: decoded in parallel, in
bounded memory, shuffled each epoch with a seed.

Built on Keras's own `PyDataset`, which `fit`, `evaluate` and `predict` take
on every backend and which prefetches batches from a pool of threads:
libjpeg-turbo and PIL release the GIL, so the threads keep every core busy, and
no TensorFlow is needed (its JPEG decoder ignores EXIF orientation and reads
a GIF as four dimensions). The files are listed by `image_folder.scan`, and
each one is decoded by `image_decoding.read_image`, so the labels and the
pixels are those of `ImageFolder` everywhere.
"""

import collections
import concurrent.futures
import copy
import itertools
import json
import os

import keras
import numpy as np

from keras_transfer.images.decoding import read_or_skip
from keras_transfer.images.folder import check_image_size, scan
from keras_transfer.utils import guards

__all__ = ["CACHE_MODES", "ImageStream", "check_shard", "worker_shard"]

CACHE_MODES = ("auto", "memory", None)


class ImageStream(keras.utils.PyDataset):
    """Batches `(images, labels)` of a class-per-folder directory, decoded as
    they are needed.

    Each batch is `uint8` `(batch, height, width, 3)` (the models cast and
    preprocess inside) and `int64` labels. Threads decode `workers` batches
    ahead of the model. A file that fails to decode is left out of its batch,
    with one warning, and listed in `skipped` (`"path (error type)"`): a
    long fit does not stop at epoch 7 for one bad file. With `shuffle`, the
    order changes each epoch, the same for the same `seed`.

    Example:

    >>> import pathlib, tempfile
    >>> from PIL import Image
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> for name in ("ants", "bees"):
    ...     (root / name).mkdir()
    ...     for i in range(3):
    ...         Image.new("RGB", (40, 30)).save(root / name / f"{i}.png")
    >>> stream = keras_transfer.ImageStream(root, (16, 16), batch_size=4)
    >>> images, labels = stream[0]
    >>> images.shape, images.dtype.name, labels.tolist(), len(stream)
    ((4, 16, 16, 3), 'uint8', [0, 0, 0, 1], 2)

    Args:
        data: a directory of class folders (listed by
            `ktr.image_folder.scan`), or `(paths, labels)`.
        image_size: `(height, width)` of the batches.
        batch_size: images a batch.
        shuffle: draw a new order each epoch.
        seed: the shuffling's seed (default: a random one).
        class_names: the classes expected, in label order (a model's).
        cache: `"auto"` keeps the decoded images in memory when they take
            less than `guards.MEMORY_SHARE` of the free memory, and streams
            from disk otherwise; `"memory"` requires it (an error, before
            anything is decoded, when they do not fit); `None` never keeps
            them.
        reduced_decoding: decode a JPEG at the smallest M/8 of its size
            not below the target's side (libjpeg-turbo's scaled IDCT,
            `ktr.image_decoding.read_image`), then resize: faster, and the
            pixels differ from PIL's full decode by about 2 levels of 255,
            about as Keras's own loader's do. `False`: PIL's full decode.
        shard: `(index, count)`: only every `count`-th file from `index`,
            for one worker of several; `"auto"` (the default) takes this
            worker's part under TensorFlow's `MultiWorkerMirroredStrategy`
            (from `TF_CONFIG`) or JAX's multi-process distribution (from
            `jax.process_index()` and `jax.process_count()`), and all files
            on one process. Every part has the same number of files (a
            shorter one repeats its own first file), and each of its
            batches holds `batch_size` images (the last one, or one with a
            file that failed, repeats its other images), so the workers
            step together.
        workers: decoding threads (default: the cores this process may use).
        max_queue_size: batches decoded ahead.
    """

    def __init__(
        self,
        data,
        image_size,
        batch_size=32,
        *,
        shuffle=False,
        seed=None,
        class_names=None,
        cache="auto",
        reduced_decoding=True,
        shard="auto",
        workers=None,
        max_queue_size=10,
    ):
        image_size = check_image_size(image_size)
        batch_size = guards.check_batch_size(batch_size)
        if cache not in CACHE_MODES:
            raise ValueError(f"`cache` must be one of {CACHE_MODES}. Received: cache={cache!r}")
        if not isinstance(shuffle, bool):
            raise TypeError(f"`shuffle` must be True or False. Received: shuffle={shuffle!r}")
        workers = _cores() if workers is None else workers
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"`workers` must be a positive int. Received: workers={workers!r}")
        super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=max_queue_size)
        if isinstance(data, tuple) and len(data) == 2:
            paths, labels = list(data[0]), np.asarray(data[1], "int64")
            self.class_names = list(class_names) if class_names is not None else None
            if len(paths) != len(labels):
                raise ValueError(
                    f"`data` paths and labels differ in length. Received: {len(paths)} paths "
                    f"and {len(labels)} labels"
                )
        else:
            self.class_names, paths, labels = scan(data, class_names, argument="data")
            labels = np.asarray(labels, "int64")
        if not paths:
            raise ValueError(f"`data` holds no image files. Received: data={data!r}")
        shard = worker_shard() if shard == "auto" else shard
        if shard is not None:
            index, count = check_shard(shard)
            if len(paths) < count:
                raise ValueError(
                    f"`data` has fewer files than the {count} parts of `shard`. Received: "
                    f"{len(paths)} files, shard={shard!r}"
                )
            rows = list(range(index, len(paths), count))
            rows += rows[:1] * (-(-len(paths) // count) - len(rows))
            paths, labels = [paths[row] for row in rows], labels[rows]
        self.shard = None if shard is None else tuple(shard)
        self.paths, self.labels = paths, labels
        self.image_size, self.batch_size = image_size, batch_size
        self.shuffle, self.reduced_decoding = shuffle, reduced_decoding
        self.seed = int(np.random.randint(2**31 - 1)) if seed is None else int(seed)
        self.epoch, self.skipped = 0, []
        self._rows = np.arange(len(paths))
        self._order = self._draw_order()
        nbytes = len(paths) * image_size[0] * image_size[1] * 3
        budget = guards.memory_budget()
        if cache == "memory" and nbytes > budget:
            raise ValueError(
                f"`cache='memory'`: the {len(paths):,} decoded images take {nbytes:,} bytes, "
                f"past the {budget:,} bytes this reader may keep ({guards.MEMORY_SHARE:.0%} of "
                "the free memory). Pass cache='auto' or None to stream them from disk."
            )
        # Allocated untouched: its pages take memory only as images fill them.
        keep = cache == "memory" or (cache == "auto" and nbytes <= budget)
        self._cache = np.empty((len(paths), *image_size, 3), "uint8") if keep else None
        self._cached = np.zeros(len(paths), bool)
        self._failed = set()

    def __len__(self):
        return -(-len(self._rows) // self.batch_size)

    @property
    def num_batches(self):
        return len(self)

    @property
    def rows(self):
        """The rows of `paths` this stream reads, in order unless shuffled:
        all of them, or a `subset`'s."""
        return self._rows

    @property
    def cached(self):
        """Whether decoded images are kept in memory (see `cache`)."""
        return self._cache is not None

    def __getitem__(self, index):
        images, labels, _ = self.batch(index)
        if not len(images):
            # Every file of the batch failed: a step needs images, so take
            # one from the others (an error when none decodes).
            row = self._any_good_row()
            images, labels = self._image(row)[None], self.labels[[row]]
        if self.shard is not None:
            # The workers' batches are joined into one global batch each
            # step, in an order `fit` shuffles on each worker: JAX needs
            # their shapes equal, so every batch is whole, the last one and
            # a failed file's place filled by the batch's other images.
            keep = np.resize(np.arange(len(images)), self.batch_size)
            images, labels = images[keep], labels[keep]
        return images, labels

    def batch(self, index):
        """`(images, labels, rows)`: batch `index`, and the rows of `paths`
        its images come from. A file that fails to decode has no row; a
        batch of such files only is empty."""
        if not 0 <= index < len(self):
            raise IndexError(f"Batch index out of range. Received: {index} of {len(self)}")
        rows = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        images = {row: self._image(row) for row in rows}
        kept = np.array([row for row in rows if images[row] is not None], "int64")
        if not len(kept):
            return np.zeros((0, *self.image_size, 3), "uint8"), self.labels[kept], kept
        return np.stack([images[row] for row in kept]), self.labels[kept], kept

    def __iter__(self):
        """`(images, labels)` of each batch in order, decoded ahead by the
        threads (Keras's `PyDataset` reads one batch at a time)."""
        for images, labels, _ in self.iter_batches():
            yield images, labels

    def iter_batches(self):
        """Yields the non-empty `batch(i)` in order, decoded by `workers`
        threads up to `max_queue_size` batches ahead: for a caller that
        needs each image's file (`keras-transfer predict` writes its rows as
        they come, a feature store its rows' ranges), where
        `model.predict(stream)` gives the outputs only."""
        ahead = max(self.workers, 1) + self.max_queue_size
        with concurrent.futures.ThreadPoolExecutor(self.workers) as pool:
            futures = (pool.submit(self.batch, index) for index in range(len(self)))
            pending = collections.deque(itertools.islice(futures, ahead))
            while pending:
                images, labels, rows = pending.popleft().result()
                pending.extend(itertools.islice(futures, 1))
                if len(rows):
                    yield images, labels, rows

    def on_epoch_end(self):
        self.epoch += 1
        self._order = self._draw_order()

    def subset(self, rows, *, shuffle=False, seed=None):
        """A stream of the files at `rows` of `paths` (in that order unless
        `shuffle`), sharing this one's decoded images and `skipped` list: the
        adaptive recipe's held-out slice is a subset, chosen by file."""
        view = copy.copy(self)
        rows = np.asarray(rows, "int64")
        seed = self.seed if seed is None else int(seed)
        vars(view).update(
            _rows=rows, shuffle=shuffle, epoch=0, seed=seed, _order=_order(rows, shuffle, seed, 0)
        )
        return view

    def _draw_order(self):
        return _order(self._rows, self.shuffle, self.seed, self.epoch)

    def _image(self, row):
        if self._cache is not None and self._cached[row]:
            return self._cache[row]
        if row in self._failed:
            return None
        image = read_or_skip(self.paths[row], self.image_size, self.reduced_decoding, self.skipped)
        if image is None:
            self._failed.add(row)
            return None
        if self._cache is not None:
            self._cache[row] = image
            self._cached[row] = True
        return image

    def _any_good_row(self):
        for row in range(len(self.paths)):
            if self._image(row) is not None:
                return row
        raise ValueError(
            f"No file of `data` decodes as an image: {len(self.skipped)} skipped, e.g. "
            f"{self.skipped[:3]}"
        )


def _order(rows, shuffle, seed, epoch):
    """`rows` in their order, or shuffled by `[seed, epoch]`."""
    return np.random.default_rng([seed, epoch]).permutation(rows) if shuffle else rows


def worker_shard():
    """`(index, count)` of this worker under several, or `None` on one.

    TensorFlow: the `chief` and `worker` tasks of `TF_CONFIG`, numbered as
    `MultiWorkerMirroredStrategy` numbers them (the chief first); another
    task (an evaluator, a parameter server) reads every file. JAX:
    `jax.process_index()` of `jax.process_count()`. Other backends: `None`.

    Example:

    >>> keras_transfer.image_stream.worker_shard() is None  # one process
    True
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        config = json.loads(os.environ.get("TF_CONFIG") or "{}")
        cluster, task = config.get("cluster", {}), config.get("task", {})
        chiefs, workers = len(cluster.get("chief", [])), len(cluster.get("worker", []))
        if chiefs + workers < 2 or task.get("type") not in ("chief", "worker"):
            return None
        offset = chiefs if task["type"] == "worker" else 0
        return offset + int(task.get("index", 0)), chiefs + workers
    if backend == "jax":
        import jax

        if jax.process_count() > 1:
            return jax.process_index(), jax.process_count()
    return None


def _cores():
    """The cores this process may run on (`taskset`, a container's CPU set)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def check_shard(shard):
    """`shard` as `(index, count)`, or an error naming what was received:
    the streams' and extraction's one check.

    Example:

    >>> keras_transfer.image_stream.check_shard((1, 4))
    (1, 4)
    """
    if (
        not isinstance(shard, (tuple, list))
        or len(shard) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in shard)
        or not 0 <= shard[0] < shard[1]
    ):
        raise ValueError(
            "`shard` must be a pair (index, count) of ints with 0 <= index < count. "
            f"Received: shard={shard!r}"
        )
    return shard
