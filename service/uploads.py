"""Multipart uploads streamed straight into a staging file.

The body is parsed as it arrives: the `file` part goes to disk chunk by chunk (never
whole in memory), small text fields are kept, and the upload is refused with 413 the
moment it crosses the size limit. The client's filename is never used as a path.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import Request
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from service.errors import InvalidInput, PayloadTooLarge

MAX_FIELD_BYTES = 64 * 1024  # text fields (label_columns, name) are short


@dataclass
class Upload:
    fields: dict[str, str] = field(default_factory=dict)
    file_received: bool = False
    size: int = 0
    sha256: str = ""  # of the file's bytes, for idempotency checks


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        "upload.too_large",
        f"The upload exceeds the {limit / 2**20:g} MiB limit (LABELWISE_MAX_UPLOAD_MB); "
        "split the file or raise the limit.",
    )


async def receive_multipart(
    request: Request, staging: Path, max_bytes: int, file_field: str = "file"
) -> Upload:
    """Parse a multipart body, writing ``file_field`` into ``staging``."""
    content_type = request.headers.get("content-type", "")
    kind, params = parse_options_header(content_type)
    if kind != b"multipart/form-data" or b"boundary" not in params:
        raise InvalidInput(
            "request.not_multipart",
            "The body must be multipart/form-data with a 'file' part.",
        )
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes + 64 * 1024:
        raise _too_large(max_bytes)

    upload = Upload()
    digest = hashlib.sha256()
    state: dict = {"name": None, "headers": {}, "field": None, "buffer": bytearray()}
    out = open(staging, "wb")

    def on_part_begin() -> None:
        state["headers"], state["name"], state["buffer"] = {}, None, bytearray()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["field"] = data[start:end].lower()

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["headers"][state["field"]] = data[start:end]

    def on_headers_finished() -> None:
        _, options = parse_options_header(
            state["headers"].get(b"content-disposition", b"")
        )
        name = options.get(b"name", b"").decode("utf-8", "replace")
        state["name"] = name
        if name == file_field:
            upload.file_received = True

    def on_part_data(data: bytes, start: int, end: int) -> None:
        chunk = memoryview(data)[start:end]  # no copy of the chunk
        if state["name"] == file_field:
            upload.size += len(chunk)
            if upload.size > max_bytes:
                raise _too_large(max_bytes)
            digest.update(chunk)
            out.write(chunk)
        else:
            state["buffer"] += chunk
            if len(state["buffer"]) > MAX_FIELD_BYTES:
                raise InvalidInput(
                    "request.field_too_large",
                    f"Form field '{state['name']}' is longer than {MAX_FIELD_BYTES} bytes.",
                )

    def on_part_end() -> None:
        if state["name"] and state["name"] != file_field:
            upload.fields[state["name"]] = state["buffer"].decode("utf-8", "replace")

    parser = MultipartParser(
        params[b"boundary"],
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except FormParserError as exc:
        raise InvalidInput(
            "request.malformed_multipart",
            f"The multipart body could not be parsed: {exc}.",
        ) from exc
    finally:
        out.close()
    upload.sha256 = digest.hexdigest()
    return upload


def multipart_body_schema(fields: dict[str, dict], required: list[str]) -> dict:
    """OpenAPI requestBody for a streamed multipart endpoint."""
    return {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {"type": "object", "required": required, "properties": fields}
            }
        },
    }
