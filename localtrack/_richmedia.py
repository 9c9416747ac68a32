"""Media logged beside scalars and stored in a run's blob logs: Image, Audio, Video, Html, Table.

A media value is checked and turned into bytes when it is logged (``_item``), not when it is
made, so an error names the key and the run; nothing is written before every value of the row
is good. The bytes go into the blob log beside the history log (see _blobs); the row holds a
small reference tag (see _codec and docs/format.md). An image is stored as its raw pixels
(uint8, height x width x channels): copying them costs microseconds where a PNG costs
milliseconds on the training thread (see benchmarks/RESULTS.md "Media"). A file given by its
path is stored as it is. numpy, Pillow, torch and pandas are imported when a value needs them.
"""

from __future__ import annotations

import io
import math
import numbers
import os
import wave
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import orjson

from .errors import InvalidValueError, UnsupportedTypeError

CHILD = "$c"  # in a table's stored JSON: the reference of its i-th child item goes here
_CHANNELS_MODE = {1: "L", 3: "RGB", 4: "RGBA"}
_IMAGE_MAGIC = ((b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpeg"), (b"GIF87a", "gif"),
                (b"GIF89a", "gif"), (b"BM", "bmp"))
_VIDEO_EXT = frozenset({"gif", "mp4", "webm", "ogg", "ogv", "mov"})
_AUDIO_EXT = frozenset({"wav", "mp3", "flac", "ogg", "m4a", "aac", "opus"})


class Item(NamedTuple):
    """One stored value: its tag's fields, its bytes, and the items its bytes refer to."""

    meta: dict[str, Any]  # type, fmt and what a reader needs (w, h, sample_rate, caption...)
    # A table's JSON holds {"$c": i} where child i's reference goes. An image's pixels are a
    # view of its array (flat, bytes): written from there, with no copy (log() is synchronous).
    data: bytes | memoryview
    children: tuple[Item, ...] = ()  # written first; their references replace {"$c": i} ...
    refs_in: str = "data"  # ... in ``data`` (a table's JSON) or in this text field of ``meta``


def splice(text: bytes, refs: list[bytes]) -> bytes:
    """``text`` with child i's reference (JSON) in place of ``{"$c": i}``."""
    for i, ref in enumerate(refs):
        text = text.replace(b'{"%s":%d}' % (CHILD.encode(), i), ref, 1)
    return text


class Media:
    """A value stored in the run's blob log (see the module docstring)."""

    _type: ClassVar[str] = ""

    def _item(self, key: str, where: str) -> Item:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<localtrack.{type(self).__name__}>"


def _bad(key: str, where: str, what: str) -> InvalidValueError:
    return InvalidValueError(f"Cannot log key {key!r} in {where}: {what}")


def _caption(caption: Any) -> str | None:
    if caption is not None and not isinstance(caption, str):
        raise UnsupportedTypeError(f"caption must be a str, got {type(caption).__name__}.")
    return caption


def _with_caption(meta: dict[str, Any], caption: str | None) -> dict[str, Any]:
    if caption is not None:
        meta["caption"] = caption
    return meta


def _is_path(value: Any) -> bool:
    return isinstance(value, (str, os.PathLike))


def _read_path(value: Any, key: str, where: str, what: str) -> tuple[bytes, str]:
    """(bytes, lower-case extension) of a file given by path; refuses a missing or empty one."""
    path = Path(os.fsdecode(value))
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise _bad(key, where, f"the {what} file {str(path)!r} does not exist.") from None
    except IsADirectoryError:
        raise _bad(key, where, f"{str(path)!r} is a folder, not a {what} file.") from None
    except OSError as exc:
        raise _bad(key, where, f"cannot read the {what} file {str(path)!r} "
                               f"({exc.strerror or exc}).") from None
    if not data:
        raise _bad(key, where, f"the {what} file {str(path)!r} is empty (0 bytes).")
    return data, path.suffix.lower().lstrip(".")


def _numpy(value: Any, key: str, where: str, what: str) -> Any:
    """``value`` (a numpy array, a torch tensor, nested lists) as a numpy array."""
    import numpy as np

    if hasattr(value, "detach"):  # a torch tensor: off the graph and the device first
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value)
    except (ValueError, TypeError):
        raise _bad(key, where, f"the {what} must be an array of one shape (got ragged "
                               f"{type(value).__name__}).") from None
    if array.size == 0:
        raise _bad(key, where, f"the {what} is empty (shape {array.shape}).")
    if array.dtype.kind not in "biuf":
        raise _bad(key, where, f"the {what} must hold numbers, got an array of "
                               f"{array.dtype.name}.")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise _bad(key, where, f"the {what} holds NaN or infinite values "
                               f"({int(array.size - np.isfinite(array).sum())} of {array.size}); "
                               "replace them first (np.nan_to_num).")
    return array


# -- images ---------------------------------------------------------------------------------


def _pixels(array: Any, key: str, where: str) -> Any:
    """A checked image array as contiguous uint8 height x width x channels (1, 3 or 4).

    Shapes: HW (grayscale), HWC, or CHW (as torch makes them) with 1, 3 or 4 channels.
    Values as W&B converts them: floats (or ints) with a maximum of at most 1 are scaled by
    255, negative ones first shifted to 0..1, and anything then clipped to 0..255.
    """
    import numpy as np

    if array.ndim == 2:
        array = array[:, :, None]
    elif array.ndim == 3:
        if array.shape[-1] not in (1, 3, 4):
            if array.shape[0] not in (1, 3, 4):
                raise _bad(key, where, f"an image of shape {array.shape} has no channel axis "
                                       "of 1, 3 or 4; give HxW, HxWxC or CxHxW.")
            array = array.transpose(1, 2, 0)
    else:
        raise _bad(key, where, f"an image must have 2 or 3 dimensions (HxW, HxWxC, CxHxW), got "
                               f"shape {array.shape}; log a batch as a list of images.")
    if array.dtype != np.uint8:
        data = array.astype(np.float64) if array.dtype.kind == "b" else array
        low = data.min()
        if low < 0:
            span = float(data.max() - low)
            data = (data - low) / span if span else data - low
        if data.max() <= 1.0:
            data = data * 255
        array = np.clip(data, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(array)


class Image(Media):
    """An image, logged as ``run.log({"sample": localtrack.Image(x, caption="...")})``.

    ``data_or_path``: a numpy array (HxW, HxWxC or CxHxW; uint8, or floats in 0..1), a torch
    tensor, a PIL image, or the path of an image file (PNG, JPEG, GIF, BMP: stored as it is).
    ``mode``: the PIL mode it is read back in (e.g. "L"). ``boxes`` and ``masks`` as W&B takes
    them: ``boxes={"predictions": {"box_data": [{"position": {"minX", "maxX", "minY", "maxY"}
    or {"middle": [x, y], "width", "height"}, "class_id", "box_caption", "scores",
    "domain": "pixel" or None}], "class_labels": {1: "cat"}}}``, ``masks={"truth":
    {"mask_data": HxW ints 0..255, "class_labels": {...}}}`` (or ``"path"``: a one-channel
    image file of class ids, read when logged); without ``class_labels``, W&B's defaults
    ``class_<id>`` for the ids present. Stored with the image (boxes as JSON in its tag, each
    mask as an item of its own) and read back as ``.boxes`` and ``.masks`` of the PIL image
    ApiRun.media returns. Everything is read and checked when the image is logged.
    """

    _type = "image"

    def __init__(self, data_or_path: Any, mode: str | None = None, caption: str | None = None,
                 grouping: int | None = None, classes: Any = None, boxes: Any = None,
                 masks: Any = None, file_type: str | None = None, normalize: bool = True) -> None:
        if mode is not None and not isinstance(mode, str):
            raise UnsupportedTypeError(f"localtrack.Image(mode={mode!r}): mode is a PIL mode "
                                       "such as 'RGB' or 'L'.")
        self._data = data_or_path
        self.mode = mode
        self.caption = _caption(caption)
        self.boxes = boxes
        self.masks = masks

    def _item(self, key: str, where: str) -> Item:
        item = self._image_item(key, where)
        if self.boxes is None and self.masks is None:
            return item
        meta = dict(item.meta)
        children: tuple[Item, ...] = ()
        if self.boxes is not None:
            meta["boxes"] = orjson.dumps(_boxes(self.boxes, key, where)).decode()
        if self.masks is not None:
            masks, children = _masks(self.masks, (meta["h"], meta["w"]), key, where)
            meta["masks"] = orjson.dumps(masks).decode()
        return Item(meta, item.data, children, "masks")

    def _image_item(self, key: str, where: str) -> Item:
        data = self._data
        raw: bytes | memoryview
        if _is_path(data):
            raw, _ = _read_path(data, key, where, "image")
            fmt = next((name for magic, name in _IMAGE_MAGIC if raw.startswith(magic)), None)
            if fmt is None:
                raise _bad(key, where, f"{os.fsdecode(data)!r} is not a PNG, JPEG, GIF or BMP "
                                       "file.")
            width, height = _image_size(raw, key, where)
            meta = {"type": "image", "fmt": fmt, "w": width, "h": height}
        else:
            if hasattr(data, "getbands") and hasattr(data, "convert"):  # a PIL image
                if data.mode not in _CHANNELS_MODE.values():
                    data = data.convert("RGBA" if "A" in data.getbands() else "RGB")
            elif data is None or isinstance(data, (bytes, numbers.Number)):
                raise UnsupportedTypeError(
                    f"Cannot log key {key!r} in {where}: localtrack.Image takes a numpy array, "
                    f"a torch tensor, a PIL image or a file path, got {type(data).__name__}.")
            pixels = _pixels(_numpy(data, key, where, "image"), key, where)
            height, width, channels = pixels.shape
            meta = {"type": "image", "fmt": "raw", "w": width, "h": height, "c": channels}
            raw = memoryview(pixels.reshape(-1))
        if self.mode is not None:
            meta["mode"] = self.mode
        return Item(_with_caption(meta, self.caption), raw)


def _real(value: Any) -> float | None:
    """``value`` as a finite float, or None when it is not a finite real number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _class_labels(labels: Any, what: str, key: str, where: str,
                  ids: Iterable[int]) -> dict[str, str]:
    """W&B's ``class_labels`` ({int: str}) with the ints as JSON keys (strings). Without them,
    W&B's defaults: ``class_<id>`` for each of the class ``ids`` present."""
    if labels is None:
        return {str(k): v for k, v in default_labels(ids).items()}
    if not isinstance(labels, dict) or not all(
            isinstance(k, numbers.Integral) and not isinstance(k, bool) and isinstance(v, str)
            for k, v in labels.items()):
        raise _bad(key, where, f"class_labels of {what} must map ints to strings, e.g. "
                               "{1: 'cat'}.")
    return {str(int(k)): v for k, v in labels.items()}


def default_labels(ids: Iterable[int]) -> dict[int, str]:
    """W&B's labels for classes given none: ``class_<id>`` for each id present."""
    return {int(i): f"class_{int(i)}" for i in sorted({int(i) for i in ids})}


def fill_default_labels(boxes: dict[str, Any], masks: dict[str, Any]) -> None:
    """Give the read box groups and masks (``mask_data`` decoded) whose ``class_labels`` are
    empty W&B's defaults for the ids they hold: runs written before the writer stored those
    defaults (issue 20) hold ``{}`` where no labels were given. Labels that were given stay."""
    import numpy as np

    for spec in boxes.values():
        if not spec["class_labels"]:
            spec["class_labels"] = default_labels(
                box["class_id"] for box in spec["box_data"] if box.get("class_id") is not None)
    for spec in masks.values():
        if not spec["class_labels"]:
            pixels = np.asarray(spec["mask_data"], np.uint8).reshape(-1)
            spec["class_labels"] = default_labels(np.flatnonzero(np.bincount(pixels, minlength=256)))


def _boxes(boxes: Any, key: str, where: str) -> dict[str, Any]:
    """W&B's ``boxes`` argument, checked: {group: {"box_data": [box], "class_labels"}}."""
    if not isinstance(boxes, dict) or not boxes:
        raise _bad(key, where, "boxes= takes a dict of box groups, e.g. {'predictions': "
                               "{'box_data': [...], 'class_labels': {1: 'cat'}}}.")
    out = {}
    for group, spec in boxes.items():
        what = f"boxes[{group!r}]"
        if not isinstance(group, str) or not isinstance(spec, dict) \
                or not isinstance(spec.get("box_data"), (list, tuple)):
            raise _bad(key, where, f"{what} must be a dict with a 'box_data' list (group names "
                                   "are strings).")
        data = [_box(box, f"{what}['box_data'][{i}]", key, where)
                for i, box in enumerate(spec["box_data"])]
        ids = (box["class_id"] for box in data if "class_id" in box)
        out[group] = {"box_data": data,
                      "class_labels": _class_labels(spec.get("class_labels"), what, key, where, ids)}
    return out


def _box(box: Any, what: str, key: str, where: str) -> dict[str, Any]:
    position = box.get("position") if isinstance(box, dict) else None
    if not isinstance(position, dict):
        raise _bad(key, where, f"{what} needs a 'position' dict: {{'minX', 'maxX', 'minY', "
                               "'maxY'}} or {'middle': [x, y], 'width', 'height'}.")
    pos: dict[str, Any]
    if "middle" in position:
        middle = position["middle"]
        xy = [_real(v) for v in middle] if isinstance(middle, (list, tuple)) else []
        size = [_real(position.get(k)) for k in ("width", "height")]
        if len(xy) != 2 or None in xy or None in size or min(s for s in size if s is not None) < 0:
            raise _bad(key, where, f"{what}: position {position!r} needs 'middle' as [x, y] and "
                                   "'width' and 'height' >= 0, all finite numbers.")
        pos = {"middle": xy, "width": size[0], "height": size[1]}
    else:
        pos = {k: _real(position.get(k)) for k in ("minX", "maxX", "minY", "maxY")}
        if None in pos.values() or pos["minX"] > pos["maxX"] or pos["minY"] > pos["maxY"]:
            raise _bad(key, where, f"{what}: position {position!r} needs finite numbers minX "
                                   "<= maxX and minY <= maxY (or 'middle', 'width', 'height').")
    out: dict[str, Any] = {"position": pos}
    domain = box.get("domain")
    if domain not in (None, "pixel"):
        raise _bad(key, where, f"{what}: domain is 'pixel' or None (fractions of the image), "
                               f"got {domain!r}.")
    if domain is not None:
        out["domain"] = domain
    class_id = box.get("class_id")
    if class_id is not None:
        if isinstance(class_id, bool) or not isinstance(class_id, numbers.Integral):
            raise _bad(key, where, f"{what}: class_id must be an int, got {class_id!r}.")
        out["class_id"] = int(class_id)
    caption = box.get("box_caption")
    if caption is not None:
        if not isinstance(caption, str):
            raise _bad(key, where, f"{what}: box_caption must be a str, got {caption!r}.")
        out["box_caption"] = caption
    scores = box.get("scores")
    if scores is not None:
        if not isinstance(scores, dict) or not all(
                isinstance(k, str) and _real(v) is not None for k, v in scores.items()):
            raise _bad(key, where, f"{what}: scores must map names to finite numbers, got "
                                   f"{scores!r}.")
        out["scores"] = {k: _real(v) for k, v in scores.items()}
    return out


def _masks(masks: Any, shape: tuple[int, int], key: str,
           where: str) -> tuple[dict[str, Any], tuple[Item, ...]]:
    """W&B's ``masks`` argument, checked: each mask becomes an item (uint8, height x width)
    whose reference goes where ``{"$c": i}`` is."""
    import numpy as np

    if not isinstance(masks, dict) or not masks:
        raise _bad(key, where, "masks= takes a dict of masks, e.g. {'predictions': "
                               "{'mask_data': array, 'class_labels': {1: 'cat'}}}.")
    out, children = {}, []
    for name, spec in masks.items():
        what = f"masks[{name!r}]"
        if not isinstance(name, str) or not isinstance(spec, dict) \
                or ("mask_data" not in spec and "path" not in spec):
            raise _bad(key, where, f"{what} must be a dict with 'mask_data', a 2-D array of "
                                   "class ids, or 'path', a one-channel image file of them.")
        mask = _numpy(spec["mask_data"], key, where, f"mask {name!r}") if "mask_data" in spec \
            else _mask_file(spec["path"], what, key, where)
        if mask.shape != shape:
            raise _bad(key, where, f"{what}: mask_data has shape {mask.shape}, the image is "
                                   f"{shape[0]}x{shape[1]} (height x width); give one class id "
                                   "per pixel.")
        if mask.dtype.kind not in "biu" or mask.min() < 0 or mask.max() > 255:
            raise _bad(key, where, f"{what}: mask_data must hold ints from 0 to 255, got "
                                   f"{mask.dtype.name} from {mask.min()} to {mask.max()}.")
        pixels: Any = np.ascontiguousarray(mask, dtype=np.uint8).reshape(-1)
        children.append(Item({"type": "mask", "fmt": "raw", "w": shape[1], "h": shape[0]},
                             memoryview(pixels)))
        labels = spec.get("class_labels")  # without them, the ids present (W&B's np.unique)
        ids = () if labels is not None else np.flatnonzero(np.bincount(pixels, minlength=256))
        out[name] = {"mask": {CHILD: len(children) - 1},
                     "class_labels": _class_labels(labels, what, key, where, ids)}
    return out, tuple(children)


def _mask_file(path: Any, what: str, key: str, where: str) -> Any:
    """The class ids of a mask given by the path of an image file (W&B writes masks as
    one-channel PNGs): a 2-D int array, checked as mask_data is."""
    import numpy as np
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    if not _is_path(path):
        raise _bad(key, where, f"{what}: 'path' must be a file path, got {type(path).__name__}.")
    data, _ = _read_path(path, key, where, "mask")
    try:
        with PILImage.open(io.BytesIO(data)) as image:
            array = np.asarray(image)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise _bad(key, where, f"{what}: the mask file {os.fsdecode(path)!r} cannot be read as "
                               f"an image ({exc}).") from None
    if array.ndim != 2:
        raise _bad(key, where, f"{what}: the mask file {os.fsdecode(path)!r} has "
                               f"{array.shape[2]} channels; a mask holds one class id per pixel "
                               "(a grayscale 'L' or palette 'P' image).")
    return array


def overlays(meta: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(boxes, masks) of a stored image's tag, as W&B takes them (class ids as ints); each
    mask's ``"mask"`` is still the reference of its item (see decode_mask)."""
    boxes = orjson.loads(meta["boxes"]) if "boxes" in meta else {}
    masks = orjson.loads(meta["masks"]) if "masks" in meta else {}
    for spec in (*boxes.values(), *masks.values()):
        spec["class_labels"] = {int(k): v for k, v in spec["class_labels"].items()}
    return boxes, masks


def decode_mask(meta: dict[str, Any], data: bytes) -> Any:
    """A stored mask as a numpy uint8 array, height x width."""
    import numpy as np

    return np.frombuffer(data, np.uint8).reshape(meta["h"], meta["w"]).copy()


def _image_size(data: bytes, key: str, where: str) -> tuple[int, int]:
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    try:
        with PILImage.open(io.BytesIO(data)) as image:
            width, height = image.size
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise _bad(key, where, f"the image file cannot be read ({exc}).") from None
    return width, height


def decode_image(meta: dict[str, Any], data: bytes) -> Any:
    """A stored image as a PIL image (in its ``mode`` when one was given)."""
    from PIL import Image as PILImage

    if meta["fmt"] == "raw":
        image = PILImage.frombytes(_CHANNELS_MODE[meta["c"]], (meta["w"], meta["h"]), data)
    else:
        image = PILImage.open(io.BytesIO(data))
        image.load()
    mode = meta.get("mode")
    return image.convert(mode) if mode and image.mode != mode else image


# -- audio, html, video ---------------------------------------------------------------------


class Audio(Media):
    """Sound: ``localtrack.Audio(samples, sample_rate=16000, caption=...)`` or a file path.

    Samples: a numpy array or tensor, (n,) or (n, channels), floats in -1..1 (clipped) or
    int16; stored as a 16-bit WAV file. A file (WAV, MP3, FLAC, OGG...) is stored as it is.
    """

    _type = "audio"

    def __init__(self, data_or_path: Any, sample_rate: int | None = None,
                 caption: str | None = None) -> None:
        self._data = data_or_path
        self.sample_rate = sample_rate
        self.caption = _caption(caption)

    def _item(self, key: str, where: str) -> Item:
        if _is_path(self._data):
            raw, ext = _read_path(self._data, key, where, "audio")
            if ext not in _AUDIO_EXT:
                raise _bad(key, where, f"{os.fsdecode(self._data)!r} is not an audio file "
                                       f"({', '.join(sorted(_AUDIO_EXT))}).")
            return Item(_with_caption({"type": "audio", "fmt": ext}, self.caption), raw)
        import numpy as np

        rate = self.sample_rate
        if isinstance(rate, bool) or not isinstance(rate, int) or not 1 <= rate <= 1 << 24:
            raise _bad(key, where, f"localtrack.Audio needs sample_rate= as a positive int "
                                   f"(samples per second), got {rate!r}.")
        samples = _numpy(self._data, key, where, "audio")
        if samples.ndim not in (1, 2) or samples.ndim == 2 and not 1 <= samples.shape[1] <= 64:
            raise _bad(key, where, f"audio must have shape (n,) or (n, channels), got "
                                   f"{samples.shape}.")
        if samples.dtype != np.int16 and samples.dtype.kind != "f":
            raise _bad(key, where, f"audio samples must be floats in -1..1 or int16, got "
                                   f"{samples.dtype.name}.")
        meta = {"type": "audio", "fmt": "wav", "sample_rate": rate,
                "channels": 1 if samples.ndim == 1 else samples.shape[1], "frames": len(samples)}
        return Item(_with_caption(meta, self.caption), encode_wav(samples, rate))


def encode_wav(samples: Any, rate: int) -> bytes:
    """A 16-bit WAV of int16 samples, or of floats in -1..1 (clipped), shape (n,) or
    (n, channels): how audio is stored, and how the dashboard serves it."""
    import numpy as np

    if samples.dtype != np.int16:
        samples = (np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(1 if samples.ndim == 1 else samples.shape[1])
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(np.ascontiguousarray(samples).astype("<i2").tobytes())
    return buf.getvalue()


def decode_audio(meta: dict[str, Any], data: bytes) -> tuple[Any, int | None]:
    """(float32 samples in -1..1, shape (n,) or (n, channels), sample rate) of a stored WAV;
    (the file's bytes, None) of another format."""
    if meta["fmt"] != "wav":
        return data, None
    import numpy as np

    with wave.open(io.BytesIO(data), "rb") as src:
        channels, width, rate = src.getnchannels(), src.getsampwidth(), src.getframerate()
        frames = src.readframes(src.getnframes())
    if width != 2:
        return data, None
    samples = np.frombuffer(frames, "<i2").astype(np.float32) / 32767
    return (samples if channels == 1 else samples.reshape(-1, channels)), rate


class Html(Media):
    """HTML: ``localtrack.Html("<b>hi</b>")``, a file (a ``pathlib.Path``, or a str naming an
    existing .html file), or an open text file."""

    _type = "html"

    def __init__(self, data: Any, inject: bool = True) -> None:
        self._data = data

    def _item(self, key: str, where: str) -> Item:
        data = self._data
        if isinstance(data, str) and data.lower().endswith((".html", ".htm")) \
                and "<" not in data and os.path.isfile(data):
            data = Path(data)
        if isinstance(data, os.PathLike):
            raw, _ = _read_path(data, key, where, "HTML")
        elif hasattr(data, "read"):
            text = data.read()
            raw = text.encode() if isinstance(text, str) else bytes(text)
        elif isinstance(data, str):
            raw = data.encode()
        else:
            raise UnsupportedTypeError(f"Cannot log key {key!r} in {where}: localtrack.Html "
                                       f"takes a str, a path or a file, got {type(data).__name__}.")
        try:
            raw.decode()
        except UnicodeDecodeError:
            raise _bad(key, where, "the HTML is not UTF-8 text.") from None
        return Item({"type": "html", "fmt": "html"}, raw)


class Video(Media):
    """A video: a file (GIF, MP4, WebM...: stored as it is) or a numpy array (time, channel,
    height, width) as W&B takes it, or (time, height, width, channel), uint8.

    An array is encoded as an animated GIF with Pillow at ``fps``; other formats need an
    encoder localtrack does not bundle: write the file yourself (e.g. with imageio or av) and
    log its path.
    """

    _type = "video"

    def __init__(self, data_or_path: Any, caption: str | None = None, fps: int = 4,
                 format: str | None = None) -> None:
        if format is not None and format != "gif" and not _is_path(data_or_path):
            raise UnsupportedTypeError(
                f"localtrack.Video(format={format!r}): a video made from an array is encoded "
                "as a GIF with Pillow; for mp4 or webm write the file with an encoder (pip "
                "install av, or imageio[ffmpeg]) and log localtrack.Video(path).")
        self._data = data_or_path
        self.caption = _caption(caption)
        self.fps = fps

    def _item(self, key: str, where: str) -> Item:
        if _is_path(self._data):
            raw, ext = _read_path(self._data, key, where, "video")
            if ext not in _VIDEO_EXT:
                raise _bad(key, where, f"{os.fsdecode(self._data)!r} is not a video file "
                                       f"({', '.join(sorted(_VIDEO_EXT))}).")
            return Item(_with_caption({"type": "video", "fmt": ext}, self.caption), raw)
        from PIL import Image as PILImage

        frames = _numpy(self._data, key, where, "video")
        if frames.ndim != 4:
            raise _bad(key, where, f"a video array must have 4 dimensions (time, channel, "
                                   f"height, width), got shape {frames.shape}.")
        if frames.shape[1] in (1, 3, 4):
            frames = frames.transpose(0, 2, 3, 1)
        elif frames.shape[-1] not in (1, 3, 4):
            raise _bad(key, where, f"a video of shape {frames.shape} has no channel axis of "
                                   "1, 3 or 4.")
        fps = self.fps
        if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps <= 1000:
            raise _bad(key, where, f"fps must be a number from 0 to 1000, got {fps!r}.")
        images = [PILImage.fromarray(_pixels(f, key, where).squeeze(-1) if f.shape[-1] == 1
                                     else _pixels(f, key, where)) for f in frames]
        buf = io.BytesIO()
        images[0].save(buf, format="GIF", save_all=True, append_images=images[1:],
                       duration=max(1, round(1000 / fps)), loop=0)
        height, width = frames.shape[1:3]
        meta = {"type": "video", "fmt": "gif", "w": int(width), "h": int(height),
                "frames": len(images), "fps": fps}
        return Item(_with_caption(meta, self.caption), buf.getvalue())


# -- tables ---------------------------------------------------------------------------------


class Table(Media):
    """Rows of cells under named columns, as W&B's ``wandb.Table``.

    ``Table(columns=["a", "b"], data=[[1, "x"], [2, "y"]])`` or ``Table(dataframe=df)``; then
    ``add_data(*row)`` and ``add_column(name, values)``. Cells: None, bool, int, float, str
    and ``localtrack.Image``. Every row has one cell per column.
    """

    _type = "table"

    def __init__(self, columns: list[Any] | None = None, data: list[Any] | None = None,
                 rows: list[Any] | None = None, dataframe: Any = None, dtype: Any = None,
                 optional: Any = True, allow_mixed_types: bool = False) -> None:
        if dataframe is not None:
            if columns is not None or data is not None or rows is not None:
                raise InvalidValueError("localtrack.Table(dataframe=...) takes no columns or data "
                                        "besides the DataFrame.")
            columns = [str(c) for c in dataframe.columns]
            data = [list(r) for r in dataframe.itertuples(index=False, name=None)]
        data = data if data is not None else rows
        if data is not None and hasattr(data, "tolist"):
            data = data.tolist()
        rows_in = [list(row) for row in (data or [])]
        if columns is None:
            columns = [f"col{i}" for i in range(len(rows_in[0]))] if rows_in \
                else ["Input", "Output", "Expected"]
        if not all(isinstance(c, str) for c in columns) or len(set(columns)) != len(columns):
            raise InvalidValueError(f"localtrack.Table(columns={list(columns)!r}): columns must "
                                    "be distinct strings.")
        self.columns: list[str] = list(columns)
        self.data: list[list[Any]] = []
        for row in rows_in:
            self.add_data(*row)

    def add_data(self, *row: Any) -> None:
        """Append one row: a cell per column."""
        if len(row) != len(self.columns):
            raise InvalidValueError(f"localtrack.Table.add_data(): a row of {len(row)} cells in "
                                    f"a table of {len(self.columns)} columns {self.columns!r}; "
                                    "give one cell per column (None for an empty one).")
        self.data.append(list(row))

    def add_column(self, name: str, data: list[Any]) -> None:
        """Add a column: one value per row."""
        if not isinstance(name, str) or name in self.columns:
            raise InvalidValueError(f"localtrack.Table.add_column({name!r}): a column name is a "
                                    "string not already in the table.")
        values = list(data)
        if self.data and len(values) != len(self.data):
            raise InvalidValueError(f"localtrack.Table.add_column({name!r}): {len(values)} "
                                    f"values for {len(self.data)} rows.")
        if not self.data:
            self.data = [[] for _ in values]
        self.columns.append(name)
        for row, value in zip(self.data, values, strict=True):
            row.append(value)

    def get_column(self, name: str) -> list[Any]:
        """The values of one column, in row order."""
        return [row[self.columns.index(name)] for row in self.data]

    def get_dataframe(self) -> Any:
        """The table as a pandas DataFrame (needs pandas)."""
        import pandas

        return pandas.DataFrame(self.data, columns=self.columns)

    def _item(self, key: str, where: str) -> Item:
        children: list[Item] = []
        rows = []
        for i, row in enumerate(self.data):
            if len(row) != len(self.columns):
                raise _bad(key, where, f"row {i} of the table has {len(row)} cells for "
                                       f"{len(self.columns)} columns.")
            rows.append([_cell(v, key, where, i, col, children)
                         for col, v in zip(self.columns, row, strict=True)])
        body = orjson.dumps({"columns": self.columns, "data": rows})
        meta = {"type": "table", "fmt": "json", "rows": len(rows), "cols": len(self.columns)}
        return Item(meta, body, tuple(children))

    def __repr__(self) -> str:
        return f"<localtrack.Table {len(self.data)} rows x {len(self.columns)} columns>"


def _cell(value: Any, key: str, where: str, row: int, col: str, children: list[Item]) -> Any:
    """A table cell as stored JSON; an image becomes a child item."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, Image):
        children.append(value._item(f"{key}[{row}][{col!r}]", where))
        return {CHILD: len(children) - 1}
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        value = value.item()  # numpy scalars and one-element tensors
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        if not -(2**63) <= int(value) < 2**63:
            raise _bad(key, where, f"table cell [{row}][{col!r}]: {value} does not fit in 64 bits.")
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        if not math.isfinite(value):
            return {"$f": "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")}
        return value
    raise UnsupportedTypeError(f"Cannot log key {key!r} in {where}: table cell [{row}][{col!r}] "
                               f"is a {type(value).__name__}; cells hold None, bool, int, float, "
                               "str or localtrack.Image.")


class _Refused(Media):
    """W&B media that localtrack does not store: made as W&B scripts make them, refused by
    log() with an error naming the key and the run."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def _item(self, key: str, where: str) -> Item:
        raise UnsupportedTypeError(
            f"Cannot log key {key!r} in {where}: localtrack.{type(self).__name__} is not stored "
            "by localtrack (3D objects and molecules have no viewer here); log the file as an "
            "artifact, or render it to an image and log localtrack.Image.")


class Object3D(_Refused):
    """Refused when logged (see _Refused): W&B's 3D point clouds and meshes."""


class Molecule(_Refused):
    """Refused when logged (see _Refused): W&B's molecule files."""
