"""Pictures in an issue: their size read from the file's header, and the size to show them at.

Mail clients need width and height on every <img> to lay the message out before the picture loads, and
a picture wider than the layout breaks it on a phone; reading the header is enough for both, so no image
library is needed.
"""

from __future__ import annotations

import struct
from pathlib import Path

LAYOUT_WIDTH = 536  # the content column: 600 px container less 2 x 32 px padding
LOGO_MAX_HEIGHT = 48
MEDIA_TYPES = {".png": "image/png", ".gif": "image/gif", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


class ImageError(ValueError):
    """A picture file cannot be read; the message names the file."""


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) in pixels of a PNG, GIF or JPEG file."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            head = file.read(64 * 1024)
    except OSError as exc:
        raise ImageError(f"{path}: cannot read the picture: {exc.strerror}") from None
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        return struct.unpack(">II", head[16:24])
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return struct.unpack("<HH", head[6:10])
    if head[:2] == b"\xff\xd8":
        size = _jpeg_size(head)
        if size:
            return size
    raise ImageError(f"{path}: not a PNG, GIF or JPEG picture that can be read (or its header is damaged)")


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    index = 2
    while index + 9 < len(data):
        if data[index] != 0xFF:
            return None
        marker = data[index + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            index += 2
            continue
        length = struct.unpack(">H", data[index + 2:index + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a start-of-frame segment
            height, width = struct.unpack(">HH", data[index + 5:index + 9])
            return width, height
        index += 2 + length
    return None


def fit(size: tuple[int, int], max_width: int = LAYOUT_WIDTH, max_height: int | None = None) -> tuple[int, int]:
    """The size to show a picture at: its own, scaled down (never up) to fit the box, ratio kept."""
    width, height = size
    scale = min(1.0, max_width / width, (max_height / height) if max_height else 1.0)
    return max(1, round(width * scale)), max(1, round(height * scale))
