"""Seeded, resumable batch iterator with vectorised CIFAR-style augmentation (NumPy or CuPy)."""
import numpy as np


def crop_flip(x, oy, ox, flip, pad, xp=np, pad_mode="constant"):
    """Pad a uint8 batch (N, C, H, W) by `pad` (zeros, or ``pad_mode="reflect"``: mirrored at the edge
    pixel, as np.pad), then take per sample i the H x W window whose top-left corner in the padded image
    is (oy[i], ox[i]), mirrored left-right if flip[i]."""
    n, c, h, w = x.shape
    padded = xp.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode=pad_mode)
    rows = oy[:, None] + xp.arange(h)                                               # (N, H)
    cols = ox[:, None] + xp.where(flip[:, None], xp.arange(w - 1, -1, -1), xp.arange(w))  # (N, W)
    return padded[xp.arange(n)[:, None, None, None], xp.arange(c)[None, :, None, None],
                  rows[:, None, :, None], cols[:, None, None, :]]


def cutout(x, cy, cx, size, xp=np):
    """Zero a size x size square centred at (cy[i], cx[i]) in each image, clipped at the border."""
    h, w = x.shape[-2:]
    dy = xp.arange(h) - (cy[:, None] - size // 2)   # (N, H): inside the square iff 0 <= dy < size
    dx = xp.arange(w) - (cx[:, None] - size // 2)
    inside = ((dy >= 0) & (dy < size))[:, :, None] & ((dx >= 0) & (dx < size))[:, None, :]
    return xp.where(inside[:, None], xp.zeros((), x.dtype), x)


class DataLoader:
    """Yield (x float32 (B, C, H, W) normalised, y int64 (B,)) batches as `xp` arrays.

    The uint8 dataset is uploaded to `xp` once. With `augment`, each batch gets a random
    crop of the padded image (`pad` pixels of zeros, or mirrored with ``pad_mode="reflect"``)
    and a horizontal flip, then after normalisation ((x / 255 - mean) / std) an optional
    `cutout` square of zeros.  ``flip="random"`` mirrors each image with probability 1/2 in
    every epoch; ``flip="alternate"`` (airbench) mirrors each image in every other epoch:
    at random in the first, then the opposite of the epoch before, so that any two
    consecutive epochs show every image both ways.

    Randomness is counter-based: epoch e is shuffled by a generator seeded with (seed, e, 0)
    and its batch b is augmented by one seeded with (seed, e, 1, b), all drawn on the host.
    So (seed, epoch, batch) is the whole RNG state, `state_dict()` resumes bit-for-bit even
    mid-epoch, and NumPy and CuPy give identical batches. Stopping early and iterating again
    continues the same epoch from the next batch.

    Data parallel (skengine.distributed): with ``num_replicas`` > 1 every batch is cut
    into that many contiguous shards and this loader yields shard ``rank`` of it,
    augmented exactly as within the whole batch (the random draws are made for the
    whole batch, then cut), so the shards of all ranks together are the batch one
    process would get.  A shard of a last, short batch may be empty.
    """

    def __init__(self, images, labels, batch_size, shuffle=False, augment=False, seed=0,
                 drop_last=False, mean=None, std=None, pad=4, cutout=0, num_replicas=1, rank=0, xp=np,
                 flip="random", pad_mode="constant"):
        if flip not in ("random", "alternate"):
            raise ValueError(f"DataLoader: flip must be 'random' or 'alternate', got {flip!r}")
        if pad_mode not in ("constant", "reflect"):
            raise ValueError(f"DataLoader: pad_mode must be 'constant' or 'reflect', got {pad_mode!r}")
        self.xp = xp
        self.images = xp.asarray(images)
        self.labels = xp.asarray(labels).astype(xp.int64, copy=False)
        if self.images.ndim != 4 or self.images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} {self.images.shape}")
        if self.labels.shape != (len(self.images),):
            raise ValueError(f"labels must have shape ({len(self.images)},), got {self.labels.shape}")
        channels = self.images.shape[1]
        mean = np.zeros(channels) if mean is None else np.asarray(mean, dtype=np.float64)
        std = np.ones(channels) if std is None else np.asarray(std, dtype=np.float64)
        self.scale = xp.asarray((1 / (255 * std)).astype(np.float32).reshape(1, -1, 1, 1))
        self.shift = xp.asarray((-mean / std).astype(np.float32).reshape(1, -1, 1, 1))
        self.batch_size, self.shuffle, self.augment, self.drop_last = batch_size, shuffle, augment, drop_last
        self.pad, self.cutout, self.flip, self.pad_mode = pad, cutout, flip, pad_mode
        if pad_mode == "reflect" and pad >= min(self.images.shape[2:]):
            raise ValueError(f"DataLoader: a reflect pad must be smaller than the images, got pad={pad} for "
                             f"images {self.images.shape}")
        self.seed, self.epoch, self.batch = seed, 0, 0
        self.set_shard(rank, num_replicas)

    def set_shard(self, rank, num_replicas):
        """Yield shard ``rank`` of ``num_replicas`` of every batch from now on."""
        if not 0 <= rank < num_replicas:
            raise ValueError(f"DataLoader: rank must be in [0, num_replicas={num_replicas}), got {rank}")
        self.rank, self.num_replicas = rank, num_replicas

    def __len__(self):
        n, b = len(self.images), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def state_dict(self):
        """Everything needed to reproduce the remaining batches: seed, epoch, batches done."""
        return {"seed": self.seed, "epoch": self.epoch, "batch": self.batch}

    def load_state_dict(self, state):
        self.seed, self.epoch, self.batch = state["seed"], state["epoch"], state["batch"]

    def __iter__(self):
        if self.batch >= len(self):  # the previous epoch is finished: start the next one
            self.epoch, self.batch = self.epoch + 1, 0
        n = len(self.images)
        order = (np.random.default_rng((self.seed, self.epoch, 0)).permutation(n)
                 if self.shuffle else np.arange(n))
        while self.batch < len(self):
            b = self.batch
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            rng = np.random.default_rng((self.seed, self.epoch, 1, b))
            self.batch += 1  # count it before yielding, so a state_dict() taken now points past it
            mine = slice(len(idx) * self.rank // self.num_replicas, len(idx) * (self.rank + 1) // self.num_replicas)
            yield self._transform(idx, rng, mine)

    def _transform(self, idx, rng, mine):
        """The batch of images ``idx`` (host indices) augmented by ``rng``, cut to the slice ``mine``."""
        xp, n, (h, w) = self.xp, len(idx), self.images.shape[2:]
        sel = xp.asarray(idx[mine])
        x = self.images[sel]
        if self.augment:  # the draws are made for the whole batch, then cut: every shard sees its part
            oy, ox = (rng.integers(0, 2 * self.pad + 1, n)[mine] for _ in range(2))
            flip = (rng.random(n) < 0.5)[mine]
            if self.flip == "alternate":  # a fixed coin per image, turned over every epoch
                coins = np.random.default_rng((self.seed, 2)).random(len(self.images)) < 0.5
                flip = coins[idx[mine]] ^ bool(self.epoch % 2)
            x = crop_flip(x, xp.asarray(oy), xp.asarray(ox), xp.asarray(flip), self.pad, xp, self.pad_mode)
        x = x * self.scale + self.shift  # uint8 * float32 -> float32
        if self.augment and self.cutout:
            cy, cx = (rng.integers(0, s, n)[mine] for s in (h, w))
            x = cutout(x, xp.asarray(cy), xp.asarray(cx), self.cutout, xp)
        return x, self.labels[sel]
