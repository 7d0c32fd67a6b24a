"""Fashion-MNIST from the IDX files of the Debian package ``dataset-fashion-mnist``.

No torchvision: the four files (``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``,
``t10k-images-idx3-ubyte[.gz]``, ``t10k-labels-idx1-ubyte[.gz]``) are parsed directly.

IDX format: a big-endian header ``0x00 0x00 <dtype code> <ndim>`` followed by ``ndim``
big-endian uint32 sizes, then the data in row-major order (here always uint8, code 0x08).

Images are returned as float32 in [0, 1] of shape ``(N, 1, 28, 28)`` (``flatten=True``: ``(N, 784)``),
optionally standardised with the training set's mean and std (:data:`MEAN`, :data:`STD`).
Labels are int64 of shape ``(N,)``.

Validation split (:func:`load_fashion_mnist_splits`): fixed, never shuffled: the **last 10,000**
(:data:`VAL_SIZE`) of the 60,000 training images are the validation set, the first 50,000 the
training set, and the 10,000 ``t10k`` images the test set. Tune on ``val``; report ``test``.
(:data:`MEAN` and :data:`STD` stay those of all 60,000 training images, so the normalisation
is the same whichever split a model was tuned on.)
"""
from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from typing import Iterator, NamedTuple, Optional, Tuple

import numpy as np
import torch

DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
INSTALL_HINT = "apt-get install dataset-fashion-mnist"
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
#: mean and std of the training images scaled to [0, 1] (all 60,000 images, all pixels)
MEAN, STD = 0.2860, 0.3530
#: size of the validation split: the last VAL_SIZE training images (see the module docstring)
VAL_SIZE = 10_000
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


class DatasetMissingError(FileNotFoundError):
    """The Fashion-MNIST files are not in the directory given."""


def _find(directory: str, stem: str) -> Optional[str]:
    for name in (stem + ".gz", stem):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    return None


def read_idx(path: str) -> np.ndarray:
    """Parse one IDX file (gzip-compressed if the name ends in ``.gz``)."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic number)")
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        raise ValueError(f"{path}: unknown IDX data type 0x{code:02x}")
    shape = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    dtype = np.dtype(_IDX_DTYPES[code])
    count = int(np.prod(shape)) if shape else 1
    offset = 4 + 4 * ndim
    if len(data) - offset < count * dtype.itemsize:
        raise ValueError(f"{path}: truncated (header says {shape})")
    return np.frombuffer(data, dtype=dtype, count=count, offset=offset).reshape(shape)


def load_fashion_mnist(split: str = "train", directory: Optional[str] = None, *, flatten: bool = False,
                       normalize: bool = True, limit: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Return ``(images, labels)`` of one split (``"train"``: 60,000, ``"test"``: 10,000).

    ``directory`` defaults to ``$FASHION_MNIST_DIR`` or :data:`DEFAULT_DIR`. ``limit`` keeps the
    first ``limit`` examples (for quick runs). Raises :class:`DatasetMissingError` naming
    ``apt-get install dataset-fashion-mnist`` when a file is missing.
    """
    if split not in FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    directory = directory or os.environ.get("FASHION_MNIST_DIR") or DEFAULT_DIR
    paths = []
    for stem in FILES[split]:
        path = _find(directory, stem)
        if path is None:
            raise DatasetMissingError(
                f"Fashion-MNIST file {stem}(.gz) not found in {directory}. Install the data set with "
                f"`{INSTALL_HINT}` (Debian/Ubuntu), or pass the directory holding the IDX files.")
        paths.append(path)
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise ValueError(f"{directory}: unexpected shapes {images.shape} and {labels.shape}")
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    if normalize:
        x = (x - MEAN) / STD
    if flatten:
        x = x.reshape(x.shape[0], -1)
    return x.contiguous(), torch.from_numpy(labels.astype(np.int64))


class Splits(NamedTuple):
    """``(images, labels)`` of the training, validation and test splits."""

    train: Tuple[torch.Tensor, torch.Tensor]
    val: Tuple[torch.Tensor, torch.Tensor]
    test: Tuple[torch.Tensor, torch.Tensor]


def holdout(x: torch.Tensor, y: torch.Tensor, size: int = VAL_SIZE) -> Tuple[Tuple[torch.Tensor, torch.Tensor],
                                                                               Tuple[torch.Tensor, torch.Tensor]]:
    """``(train, val)``: the last ``size`` examples of ``(x, y)`` held out as a fixed validation
    set (never shuffled), the ones before them for training. Any data set: score every choice a
    run makes (``SqueezeRelease``'s ``eval_fn``, the accuracy floor, which cycle to keep) on
    ``val``, and read the test set once, for the model chosen. Raises ``ValueError`` unless
    ``0 < size < len(x)`` and ``x``, ``y`` have the same length."""
    n = x.shape[0]
    if y.shape[0] != n:
        raise ValueError(f"x has {n} examples, y {y.shape[0]}")
    if not 0 < size < n:
        raise ValueError(f"the validation size must be in (0, {n}) for {n} examples, got {size}")
    cut = n - size
    return (x[:cut], y[:cut]), (x[cut:], y[cut:])


def load_fashion_mnist_splits(directory: Optional[str] = None, *, flatten: bool = False, normalize: bool = True,
                              val_size: int = VAL_SIZE) -> Splits:
    """The fixed train / validation / test split: ``val`` is the last ``val_size`` (default
    :data:`VAL_SIZE` = 10,000) images of the training file, ``train`` the ones before them (50,000
    of the real data set), ``test`` the ``t10k`` file. Same options as :func:`load_fashion_mnist`.
    Raises ``ValueError`` when the training file does not hold more than ``val_size`` images."""
    x, y = load_fashion_mnist("train", directory, flatten=flatten, normalize=normalize)
    if not 0 < val_size < x.shape[0]:
        raise ValueError(f"val_size must be in (0, {x.shape[0]}) for {x.shape[0]} training images, got {val_size}")
    train, val = holdout(x, y, val_size)
    return Splits(train, val, load_fashion_mnist("test", directory, flatten=flatten, normalize=normalize))


@dataclass
class TensorLoader:
    """Minimal in-memory batch iterator (much faster than ``DataLoader`` for small tensors).

    Reshuffles every epoch from ``seed + epoch`` when ``shuffle``; ``rank``/``world_size`` give
    each process of a distributed run its own disjoint share (equal lengths, the tail dropped).
    """

    x: torch.Tensor
    y: torch.Tensor
    batch_size: int = 128
    shuffle: bool = True
    seed: int = 0
    rank: int = 0
    world_size: int = 1
    epoch: int = 0

    def _order(self) -> torch.Tensor:
        n = self.x.shape[0]
        if self.shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        else:
            order = torch.arange(n)
        per = n // self.world_size
        return order[self.rank * per:(self.rank + 1) * per] if self.world_size > 1 else order

    def __len__(self) -> int:
        per = self.x.shape[0] // self.world_size
        return (per + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        order = self._order()
        self.epoch += 1
        for i in range(0, order.numel(), self.batch_size):
            idx = order[i:i + self.batch_size]
            yield self.x[idx], self.y[idx]
