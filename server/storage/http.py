"""Answer a download from any storage backend: Range, If-Range, If-None-Match and HEAD, streamed.

One helper for every blob the server hands out (generated audio, panel release packages), so a
download works the same from a local folder and from a bucket, and never holds a whole file in
memory: the requested bytes are passed on chunk by chunk as the store yields them.
"""

from __future__ import annotations

import logging
import re
from email.utils import formatdate, parsedate_to_datetime
from urllib.parse import quote

from aiohttp import web

from server.appkeys import REQUEST_ID
from server.storage.service import BlobStorage, ObjectInfo, ObjectNotFound, StorageUnavailable
from server.web.errors import ApiError, NotFound
from server.web.middleware import REQUEST_ID_HEADER

log = logging.getLogger("server.storage")

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class RangeNotSatisfiable(ApiError):
    status, code = 416, "range_not_satisfiable"


class ObjectGone(NotFound):
    """The record names a blob the store no longer has (a 404, JSON like every API error)."""

    code = "object_gone"


async def serve_object(
    request: web.Request,
    storage: BlobStorage,
    key: str,
    *,
    content_type: str,
    filename: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.StreamResponse:
    """Stream the blob `key` as the response. Raises ObjectGone (404) before anything is sent when
    the blob is gone (callers may word their own 404), StorageUnavailable (503) when the store is down.

    Range and If-Range apply to GET and HEAD only; `headers` are added to the response (and win)."""
    try:
        info = await storage.stat(key)
    except ObjectNotFound:
        raise ObjectGone("The file is no longer stored") from None
    out = {
        "Content-Type": content_type,
        "Accept-Ranges": "bytes",
        "ETag": info.etag,
        "Last-Modified": formatdate(info.modified, usegmt=True),
    }
    if filename:
        out["Content-Disposition"] = attachment(filename)
    out.update(headers or {})
    request_id = request.get(REQUEST_ID)
    if request_id:
        out[REQUEST_ID_HEADER] = request_id

    readable = request.method in ("GET", "HEAD")
    if readable and _matches(request.headers.get("If-None-Match"), info):
        return web.Response(status=304, headers={k: v for k, v in out.items() if k != "Content-Type"})
    start, end = 0, info.size
    status = 200
    if readable and "Range" in request.headers and _if_range_holds(request.headers.get("If-Range"), info):
        wanted = parse_range(request.headers["Range"], info.size)
        if wanted is False:
            raise RangeNotSatisfiable(
                f"The range is outside the file ({info.size} bytes)",
                details={"size": info.size}, headers={"Content-Range": f"bytes */{info.size}"},
            )
        if wanted is not None:
            start, end = wanted
            status = 206
            out["Content-Range"] = f"bytes {start}-{end - 1}/{info.size}"

    response = web.StreamResponse(status=status, headers=out)
    response.content_length = end - start
    await response.prepare(request)
    if request.method != "HEAD" and end > start:
        try:
            async for chunk in storage.stream(key, start, end):
                await response.write(chunk)
        except (StorageUnavailable, ObjectNotFound) as exc:
            # The status line is sent already: the only honest signal left is a short body. The
            # connection is closed so the client sees it (Content-Length unmet) and may resume.
            log.warning("download cut short by the store", extra={"key": key, "error": type(exc).__name__})
            if request.transport is not None:
                request.transport.close()
            return response
    await response.write_eof()
    return response


def parse_range(header: str, size: int) -> tuple[int, int] | None | bool:
    """[start, end) of a single `bytes=` range; None to ignore the header (several ranges, other
    units, bad syntax: RFC 9110 lets a server answer those with the whole file); False when
    the range cannot be satisfied."""
    match = _RANGE.match(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # the last N bytes
        length = int(last)
        if length == 0:
            return False
        return max(0, size - length), size
    start = int(first)
    end = size if not last else min(int(last) + 1, size)
    if last and int(last) < start:
        return None
    if start >= size:
        return False
    return start, end


def attachment(filename: str) -> str:
    """Content-Disposition for a download: a plain ASCII name, and the exact one for clients that read it."""
    ascii_name = "".join(c if 32 <= ord(c) < 127 and c not in '"\\;' else "_" for c in filename)
    value = f'attachment; filename="{ascii_name}"'
    if ascii_name != filename:
        value += f"; filename*=UTF-8''{quote(filename, safe='')}"
    return value


def _matches(header: str | None, info: ObjectInfo) -> bool:
    if not header:
        return False
    tags = {t.strip().removeprefix("W/") for t in header.split(",")}
    return "*" in tags or info.etag in tags


def _if_range_holds(header: str | None, info: ObjectInfo) -> bool:
    """If-Range names the version the client has; a range of another version would corrupt it."""
    if not header:
        return True
    header = header.strip()
    if header.startswith('"'):
        return header == info.etag
    try:
        return int(parsedate_to_datetime(header).timestamp()) >= int(info.modified)
    except (TypeError, ValueError):
        return False
