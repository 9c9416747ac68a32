"""Image encoding on the training thread: PNG with Pillow against raw bytes (issue 20).

For a 64x64x3 and a 256x256x3 uint8 image (random noise, the worst case for PNG, and a smooth
gradient, closer to a photo or a rendered sample), times in this process: Pillow's PNG at
compress_level 1 and at its default (6), and copying the raw bytes (``tobytes()``, what a
store that encodes while sealing would write in log()). Reports the median of ``--repeats``
calls and the bytes each produces.

    python benchmarks/bench_media.py [--repeats 200] [--markdown]
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from collections.abc import Callable
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


def main() -> None:
    import numpy as np

    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=200)
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
