"""What a batch translation runs on the cluster, one Ray Data stage each:

- `decode`: CPU tasks read each input's bytes from its store and decode it as training does
  (cyclegan.data: 16-bit scaled to 8 bits, palette and RGBA to RGB, or greyscale);
- `Translator`: the actors, each holding the generator once, translating images of one size as one
  batch at their exact size (cyclegan.translate.translate_batch; on a GPU bf16 autocast,
  channels-last and torch.compile for shapes that repeat; plain fp32 on a CPU);
- `write`: CPU tasks encode each translation and write it atomically at its output key;
- `CpuTranslator`: the three in one actor, for CPU workers.

A row carries its input and output keys, its pixels (raw uint8 bytes and their shape) and a status:
`ok`, `unreadable` (the image cannot be decoded or is too large: skipped, listed with its reason) or
`error` (anything else, e.g. S3 failing after its retries: the job ends non-zero).
"""

from __future__ import annotations

import io
import logging
import tempfile
from typing import Any

import numpy as np

from .stores import Store

log = logging.getLogger(__name__)

Batch = dict[str, np.ndarray]
OK, UNREADABLE, ERROR = "ok", "unreadable", "error"


def _rows(batch: Batch) -> list[dict[str, Any]]:
    names = list(batch)
    return [dict(zip(names, values)) for values in zip(*(batch[n] for n in names))]


def _batch(rows: list[dict[str, Any]], names: tuple[str, ...]) -> Batch:
    return {n: np.array([r[n] for r in rows], dtype=object) for n in names}


COMPILE_AFTER = 2  # a batch shape met this often is translated by the compiled generator (CUDA)
PIXEL_COLUMNS = ("in_key", "out_key", "status", "reason", "pixels", "height", "width", "channels")
RESULT_COLUMNS = ("in_key", "out_key", "status", "reason")


def decode(batch: Batch, store: Store, channels: int) -> Batch:
    """Read and decode each input of the batch (a Ray Data task)."""
    from cyclegan.data import decode_image
    from cyclegan.errors import DatasetError

    rows = []
    for row in _rows(batch):
        row.update(status=OK, reason="", pixels=b"", height=0, width=0, channels=0)
        try:
            data = store.read(row["in_key"])
        except Exception as err:  # S3 failing after its retries: not the image's fault
            row.update(status=ERROR, reason=str(err))
            rows.append(row)
            continue
        try:
            array = np.asarray(decode_image(data, row["in_key"], channels))
        except DatasetError as err:
            row.update(status=UNREADABLE, reason=str(err).removeprefix(f"{row['in_key']}: "))
        else:
            array = array[:, :, None] if array.ndim == 2 else array
            row.update(
                pixels=array.tobytes(),
                height=array.shape[0],
                width=array.shape[1],
                channels=array.shape[2],
            )
        rows.append(row)
    return _batch(rows, PIXEL_COLUMNS)


class Translator:
    """A Ray Data actor: loads the generator once, then translates batches (grouped by size)."""

    def __init__(self, generator: bytes, options: dict[str, Any], multiple: int, threads: int = 1):
        import torch

        from cyclegan.checkpoint import load_generator
        from cyclegan.threads import usable_cores

        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        if self.device == "cpu":
            # Ray gives the actor one thread (OMP_NUM_THREADS=1 for its one CPU), but the network
            # is nearly all of the work: the decode and write tasks beside it are light, so each
            # worker takes its share of the cluster's cores (the driver's `threads`).
            torch.set_num_threads(max(1, min(threads, usable_cores())))
        with tempfile.NamedTemporaryFile(suffix=".pth") as f:
            f.write(generator)
            f.flush()
            self.net = load_generator(f.name, device=self.device, **options)
        self.compiled = None
        self.seen: dict[tuple[int, ...], int] = {}  # how often each batch shape came
        if self.device == "cuda":
            torch.backends.cudnn.benchmark = True  # sizes repeat: time cuDNN's algorithms once
            self.net = self.net.to(memory_format=torch.channels_last)
            self.compiled = torch.compile(self.net, dynamic=False)
        self.multiple = multiple

    def _translate(self, images):
        """Eager for a batch shape met for the first times; compiled (on CUDA) once it repeats,
        where compiling pays off. A compile failure falls back to eager for good."""
        from cyclegan.translate import translate_batch

        shape = tuple(images.shape)
        self.seen[shape] = self.seen.get(shape, 0) + 1
        if self.compiled is not None and self.seen[shape] > COMPILE_AFTER:
            try:
                return translate_batch(self.compiled, images, self.multiple, autocast=True)
            except Exception as err:  # torch.compile's failures take many forms
                log.warning("torch.compile failed (%s); translating eagerly", err)
                self.compiled = None
        return translate_batch(self.net, images, self.multiple, autocast=True)

    def __call__(self, batch: Batch) -> Batch:
        import torch

        from cyclegan.translate import to_array, to_tensor

        rows = _rows(batch)
        by_size: dict[tuple[int, int, int], list[dict]] = {}
        for row in rows:
            if row["status"] == OK:
                by_size.setdefault((row["height"], row["width"], row["channels"]), []).append(row)
        for (height, width, channels), group in by_size.items():
            images = torch.stack(
                [
                    to_tensor(np.frombuffer(r["pixels"], np.uint8).reshape(height, width, channels))
                    for r in group
                ]
            )
            out = self._translate(images)
            for row, tensor in zip(group, out):
                array = to_array(tensor)
                row.update(pixels=array.tobytes(), channels=array.shape[2])
        return _batch(rows, PIXEL_COLUMNS)


class CpuTranslator(Translator):
    """On CPU workers one actor reads, decodes, translates, encodes and writes each block: no image
    crosses the object store (a block's result is a few keys and statuses), so a lost node loses
    only the blocks in its actor, which Ray Data does again elsewhere; and beside a network that is
    nearly all of the work, decode and write tasks of their own on the same cores bought nothing
    (docs/PERFORMANCE.md, "Batch translation")."""

    def __init__(self, *args: Any, decoding: dict[str, Any], writing: dict[str, Any], **kwargs):
        """`decoding` and `writing`: `decode`'s and `write`'s keyword arguments."""
        super().__init__(*args, **kwargs)
        self.decoding, self.writing = decoding, writing

    def __call__(self, batch: Batch) -> Batch:
        return write(super().__call__(decode(batch, **self.decoding)), **self.writing)


def write(batch: Batch, store: Store, fmt: str, metadata: dict[str, str]) -> Batch:
    """Encode and write each translation at its output key (a Ray Data task); the result rows
    carry no pixels."""
    from PIL import Image

    rows = _rows(batch)
    for row in rows:
        if row["status"] != OK:
            continue
        array = np.frombuffer(row["pixels"], np.uint8).reshape(
            row["height"], row["width"], row["channels"]
        )
        image = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
        buffer = io.BytesIO()
        image.save(buffer, format={"jpg": "JPEG"}.get(fmt, fmt.upper()), **_quality(fmt))
        try:
            store.write(row["out_key"], buffer.getvalue(), metadata)
        except Exception as err:
            row.update(status=ERROR, reason=str(err))
    return _batch(rows, RESULT_COLUMNS)


def _quality(fmt: str) -> dict[str, Any]:
    return {"quality": 95} if fmt in ("jpg", "webp") else {}
