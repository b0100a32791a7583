"""Cut a returned message down to the parts that can explain it, before anything parses it whole.

A bounce may carry a 20 MB attachment or quote a long message; the reason for the failure is in the first
lines of its text parts and in its report parts. trim() keeps the MIME structure and every header block,
keeps at most PART_LIMIT bytes of each text or report part, and empties the bodies of attachments and
binary parts. It finds boundaries with bytes.find, so the cost is linear in the size of the message and
everything after it (the email parser, flufl.bounce's detectors, our regexes) works on a bounded input.
"""

from __future__ import annotations

from email.message import Message
from email.parser import BytesHeaderParser

PART_LIMIT = 64 * 1024
HEADER_LIMIT = 64 * 1024
MAX_DEPTH = 12  # real reports nest three or four levels; more is an attack or a broken message
MAX_PARTS = 64  # per multipart; a report has a handful
# Report parts are kept even when a server labels them as attachments.
_REPORT_TYPES = {"message/delivery-status", "message/feedback-report", "text/rfc822-headers",
                 "message/global-delivery-status", "message/global-headers"}
_EMBEDDED_TYPES = {"message/rfc822", "message/global"}


class TooDeep(ValueError):
    """MIME parts nested deeper than MAX_DEPTH."""


def trim(raw: bytes) -> bytes:
    """The message with only its relevant parts, each cut to PART_LIMIT bytes; raises TooDeep."""
    return _trim_entity(raw, 0)


def _trim_entity(raw: bytes, depth: int) -> bytes:
    if depth > MAX_DEPTH:
        raise TooDeep(f"MIME parts nested deeper than {MAX_DEPTH} levels")
    head, separator, body = _split_head(raw)
    headers = BytesHeaderParser().parsebytes(head + separator)
    content_type = headers.get_content_type()
    newline = b"\r\n" if separator.startswith(b"\r\n") or head.endswith(b"\r") else b"\n"
    if headers.get_content_maintype() == "multipart":
        boundary = _boundary(headers)
        if boundary:
            parts = _split_multipart(body, boundary)[:MAX_PARTS]
            delimiter = b"--" + boundary
            pieces = [head, separator or newline * 2]
            for part in parts:
                pieces += [delimiter, newline, _trim_entity(part, depth + 1), newline]
            pieces += [delimiter, b"--", newline]
            return b"".join(pieces)
    if content_type in _EMBEDDED_TYPES:
        return head + separator + _trim_entity(body, depth + 1)
    if content_type in _REPORT_TYPES or (content_type.startswith("text/") and not _is_attachment(headers)):
        return head + separator + _cut(body, PART_LIMIT)
    return head + separator  # an attachment or binary part: its content explains no failure


def _split_head(raw: bytes) -> tuple[bytes, bytes, bytes]:
    """(header block, the blank line after it, body); a header block past HEADER_LIMIT is cut there."""
    window = raw[: HEADER_LIMIT + 4]
    if window.startswith((b"\r\n", b"\n")):  # no headers at all
        separator = b"\r\n" if window.startswith(b"\r\n") else b"\n"
        return b"", separator, raw[len(separator):]
    ends = [(window.find(sep), sep) for sep in (b"\r\n\r\n", b"\n\n", b"\n\r\n")]
    found = [(at, sep) for at, sep in ends if at >= 0]
    if not found:
        return _cut(raw, HEADER_LIMIT), b"", b""
    at, separator = min(found)
    return raw[:at], separator, raw[at + len(separator):]


def _boundary(headers: Message) -> bytes:
    boundary = headers.get_param("boundary")
    if isinstance(boundary, tuple):  # RFC 2231 encoded
        boundary = boundary[2]
    if not boundary:
        return b""
    return str(boundary).encode("ascii", errors="replace")


def _split_multipart(body: bytes, boundary: bytes) -> list[bytes]:
    """The body parts between the boundary lines (RFC 2046 5.1.1), without preamble and epilogue."""
    delimiter = b"--" + boundary
    parts: list[bytes] = []
    start = _delimiter_at(body, delimiter, 0)
    while start >= 0:
        after = start + len(delimiter)
        if body[after:after + 2] == b"--":  # the closing delimiter
            break
        line_end = body.find(b"\n", after)
        if line_end < 0:
            break
        following = _delimiter_at(body, delimiter, line_end + 1)
        end = len(body) if following < 0 else following - 1  # the line break before it is not content
        part = body[line_end + 1:end]
        parts.append(part[:-1] if part.endswith(b"\r") else part)
        start = following
    return parts


def _delimiter_at(body: bytes, delimiter: bytes, position: int) -> int:
    """Where the next boundary line starts: the delimiter at a line start, followed by the line's end,
    white space or "--" (so boundary "b1" does not match "b10")."""
    while True:
        if position == 0 and body.startswith(delimiter):
            found = 0
        else:
            found = body.find(b"\n" + delimiter, max(position - 1, 0))
            if found < 0:
                return -1
            found += 1
        follower = body[found + len(delimiter):found + len(delimiter) + 1]
        if follower in (b"", b"\r", b"\n", b" ", b"\t", b"-"):
            return found
        position = found + len(delimiter)


def _is_attachment(headers: Message) -> bool:
    return str(headers.get("Content-Disposition", "")).strip().lower().startswith("attachment")


def _cut(data: bytes, limit: int) -> bytes:
    """At most `limit` bytes, ending at a line break so that base64 and quoted-printable stay decodable."""
    if len(data) <= limit:
        return data
    line_end = data.rfind(b"\n", 0, limit)
    return data[: line_end + 1] if line_end > 0 else data[:limit]
