"""Image encoding on the training thread: PNG with Pillow against raw bytes (issue 20).

For a 64x64x3 and a 256x256x3 uint8 image (random noise, the worst case for PNG, and a smooth
gradient, closer to a photo or a rendered sample), times in this process: Pillow's PNG at
compress_level 1 and at its default (6), and copying the raw bytes (``tobytes()``, what a
store that encodes while sealing would write in log()). Reports the median of ``--repeats``
calls and the bytes each produces. Then what localtrack does: ``run.log({"img": Image(x)})``
of a 224x224x3 uint8 image, the median cost per call on the training thread (default fsync
policy), and after ``--images`` of them and finish(): the files of the run and their bytes.

    python benchmarks/bench_media.py [--repeats 200] [--images 2000] [--markdown]
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _png(level: int | None) -> Callable[[Any], bytes]:
    def encode(array: Any) -> bytes:
        from PIL import Image

        buf = io.BytesIO()
        image = Image.fromarray(array)
        if level is None:
            image.save(buf, format="PNG")
        else:
            image.save(buf, format="PNG", compress_level=level)
        return buf.getvalue()
    return encode


def _raw(array: Any) -> bytes:
    return bytes(array.tobytes())


def _log_images(count: int) -> tuple[float, int, int]:
    """(median µs per log() of an image, files in the finished run, their bytes)."""
    import os
    import tempfile

    import numpy as np

    import localtrack
    from localtrack import _sealer

    image = np.random.default_rng(1).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as store:
        run = localtrack.init(project="bench", id="media", dir=store)
        times = []
        for i in range(count):
            t0 = time.perf_counter()
            run.log({"img": localtrack.Image(image), "i": i})
            times.append(time.perf_counter() - t0)
        run.finish()
        rdir = os.path.join(store, "bench", "runs", "media")
        _sealer.wait_idle(Path(rdir))
        files = [os.path.join(d, f) for d, _, fs in os.walk(rdir) for f in fs]
        return (statistics.median(times) * 1e6, len(files),
                sum(os.path.getsize(f) for f in files))


def main() -> None:
    import numpy as np

    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    images = {}
    for side in (64, 256):
        images[f"{side}x{side}x3 noise"] = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        ramp = np.linspace(0, 255, side, dtype=np.float64)
        grad = np.stack([np.add.outer(ramp, ramp) / 2, np.add.outer(ramp, -ramp) / 2 + 128,
                         np.full((side, side), 64.0)], axis=-1)
        images[f"{side}x{side}x3 smooth"] = grad.clip(0, 255).astype(np.uint8)
    encoders = {"raw bytes": _raw, "PNG compress_level=1": _png(1), "PNG default (6)": _png(None)}
    rows = []
    for name, array in images.items():
        for label, encode in encoders.items():
            encode(array)  # warm up (imports, allocator)
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                out = encode(array)
                times.append(time.perf_counter() - t0)
            rows.append((name, label, statistics.median(times) * 1e6, len(out)))
    us, files, size = _log_images(args.images)
    print(f"log() of a 224x224x3 uint8 Image: median {us:,.0f} µs; {args.images} images -> "
          f"{files} files, {size:,} bytes ({size / (args.images * 224 * 224 * 3):.3f}x the pixels)")
    if args.markdown:
        print("| image | encoding | median µs | bytes |")
        print("|---|---|---:|---:|")
        for name, label, us, size in rows:
            print(f"| {name} | {label} | {us:,.0f} | {size:,} |")
    else:
        for name, label, us, size in rows:
            print(f"{name:20} {label:22} {us:10,.0f} us {size:10,} B")


if __name__ == "__main__":
    main()
