"""Images as grayscale pixels, from whatever a caller holds: bytes, a file, an array.

What a detector reads, at training and serving time alike. Anything that is not an image
gets a :class:`~loopline.errors.DataError` saying what it is and what to send instead.
Pillow is imported inside the functions.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from loopline.errors import DataError

__all__ = ["ImageInput", "decode_image", "gray_pixels", "read_gray"]

# An image as callers hold it: encoded bytes, a file, or pixels (h x w, or h x w x channels).
ImageInput = bytes | bytearray | memoryview | str | Path | np.ndarray


def decode_image(data: bytes, where: str = "the image") -> np.ndarray:
    """Grayscale pixels (h x w, uint8) of encoded image bytes (PNG, JPEG, BMP, GIF, WebP...).

    Raises :class:`~loopline.errors.DataError` naming ``where`` when the bytes are empty,
    not an image, or a truncated one.
    """
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise DataError(f"{where} is empty", hint="send the bytes of a PNG or JPEG file")
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()  # decode every pixel: a truncated file fails here
            return np.asarray(img.convert("L"))
    except UnidentifiedImageError:
        raise DataError(
            f"{where} is not an image ({len(data)} bytes starting {data[:12]!r})",
            hint="send the bytes of a PNG, JPEG, BMP, GIF or WebP file",
        ) from None
    except (OSError, ValueError, SyntaxError) as exc:  # a known format, but corrupt
        raise DataError(
            f"{where} cannot be decoded: {exc}", hint="send a complete, uncorrupted image file"
        ) from None


def read_gray(path: str | Path) -> np.ndarray:
    """Grayscale pixels of the image file ``path``."""
    file = Path(path)
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise DataError(
            f"cannot read the image {file}: {exc.strerror}", hint="check the path"
        ) from None
    return decode_image(data, str(file))


def gray_pixels(image: ImageInput, where: str = "the image") -> np.ndarray:
    """Grayscale pixels (h x w, uint8) of encoded bytes, an image file or an array
    (h x w grayscale, or h x w x 3/4 colour, converted)."""
    if isinstance(image, np.ndarray):
        if image.ndim == 2:
            return image.astype(np.uint8, copy=False)
        if image.ndim == 3 and image.shape[2] in (3, 4):
            from PIL import Image

            return np.asarray(Image.fromarray(image.astype(np.uint8)).convert("L"))
        raise DataError(
            f"{where} is an array of shape {image.shape}",
            hint="pass h x w (grayscale) or h x w x 3 (colour) pixels",
        )
    if isinstance(image, bytes | bytearray | memoryview):
        return decode_image(bytes(image), where)
    return read_gray(image)
