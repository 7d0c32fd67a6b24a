"""Fashion-MNIST loader: IDX parsing, the missing-file error, the in-memory loader (no real data needed)."""
import gzip
import struct

import numpy as np
import pytest
import torch

from fxminimize.training.data import (VAL_SIZE, DatasetMissingError, TensorLoader, load_fashion_mnist,
                                     load_fashion_mnist_splits, read_idx)


def _write_idx(path, arr, compress):
    header = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


@pytest.mark.parametrize("compress", [True, False])
def test_reads_idx_files(tmp_path, compress):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(7, 28, 28))
    labels = rng.integers(0, 10, size=7)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", imgs, compress)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels, compress)
    x, y = load_fashion_mnist("test", str(tmp_path), normalize=False)
    assert x.shape == (7, 1, 28, 28) and x.dtype == torch.float32
    torch.testing.assert_close(x[:, 0], torch.from_numpy(imgs / 255.0).float())
    assert y.tolist() == labels.tolist() and y.dtype == torch.int64
    xf, _ = load_fashion_mnist("test", str(tmp_path), flatten=True, limit=3)
    assert xf.shape == (3, 784)


def test_missing_files_name_the_package(tmp_path):
    with pytest.raises(DatasetMissingError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist("train", str(tmp_path))
    assert issubclass(DatasetMissingError, FileNotFoundError)


def test_bad_magic(tmp_path):
    p = tmp_path / "bad"
    p.write_bytes(b"\x01\x02\x08\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match="magic"):
        read_idx(str(p))


def test_bad_split():
    with pytest.raises(ValueError):
        load_fashion_mnist("val", "/nonexistent")


def test_tensor_loader_epochs_and_shards():
    x, y = torch.arange(10).float().unsqueeze(1), torch.arange(10)
    ld = TensorLoader(x, y, batch_size=4, seed=1)
    e1 = torch.cat([b for _, b in ld])
    e2 = torch.cat([b for _, b in ld])
    assert sorted(e1.tolist()) == list(range(10)) and e1.tolist() != e2.tolist()
    assert len(ld) == 3
    shards = [torch.cat([b for _, b in TensorLoader(x, y, 2, seed=3, rank=r, world_size=2)]) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 5
    assert not set(shards[0].tolist()) & set(shards[1].tolist())


def test_fixed_validation_split_is_the_last_10000_training_images(tmp_path):
    from helpers import synthetic_fashion_mnist

    assert VAL_SIZE == 10_000
    synthetic_fashion_mnist(tmp_path, n_train=VAL_SIZE + 300, n_test=50)
    xa, ya = load_fashion_mnist("train", str(tmp_path))
    s = load_fashion_mnist_splits(str(tmp_path))
    (xtr, ytr), (xv, yv), (xte, yte) = s
    assert xtr.shape[0] == 300 and xv.shape[0] == VAL_SIZE and xte.shape[0] == 50
    assert torch.equal(xtr, xa[:300]) and torch.equal(ytr, ya[:300])
    assert torch.equal(xv, xa[300:]) and torch.equal(yv, ya[300:])   # the LAST 10,000, in file order
    assert torch.equal(s.test[0], load_fashion_mnist("test", str(tmp_path))[0])
    small = load_fashion_mnist_splits(str(tmp_path), val_size=100, flatten=True)
    assert small.train[0].shape == (VAL_SIZE + 200, 784) and torch.equal(small.val[1], ya[-100:])
    with pytest.raises(ValueError, match="val_size"):
        load_fashion_mnist_splits(str(tmp_path), val_size=VAL_SIZE + 300)
