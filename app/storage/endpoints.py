"""Presigned uploads and downloads for the local backend (``app/storage/local.py``).

The token in the path is the whole authorisation: signed, expiring, naming one key, the
only content type and the largest size accepted. ``PUT`` takes the raw body; ``POST``
takes the multipart form an S3 presigned POST sends (its policy fields are accepted and
ignored: the token already says what they would), so one client works with either
backend. The body is read incrementally and refused as soon as it passes the limit.
With the S3 backend these routes answer 404: clients talk to S3 itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import StreamingResponse
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from app.core.errors import InvalidInput, NotFound, SwitchboardError
from app.core.openapi import example, problem
from app.storage.base import ObjectMissing, content_disposition
from app.storage.local import OBJECTS_PATH, LocalObjectStore, UrlClaims

router = APIRouter(tags=["storage"])

CHUNK = 64 * 1024
# Room for the form fields and part headers around the file of a presigned POST.
FORM_OVERHEAD = 64 * 1024
MAX_FIELD_BYTES = 8 * 1024
MAX_PARTS = 32


class TooLarge(SwitchboardError):
    status, code, title = 413, "too-large", "Payload too large"


class UnsupportedType(SwitchboardError):
    status, code, title = 415, "unsupported-type", "Unsupported media type"


_FORBIDDEN = problem(
    "The URL is not one we signed, is for another operation, or has expired",
    example(403, "signature-invalid", "The URL's signature is invalid."),
    example(403, "url-expired", "The URL has expired; ask for a new one."),
)
_NOT_FOUND = problem(
    "No such object, or object storage is not the local backend",
    example(404, "not-found", "No such object."),
)
_TOO_LARGE = problem(
    "The body is larger than the URL allows",
    example(
        413, "too-large", "The object exceeds 10485760 bytes.", field="body", max_bytes=10485760
    ),
)
_WRONG_TYPE = problem(
    "Another content type than the URL allows",
    example(
        415,
        "unsupported-type",
        "This URL accepts only image/png.",
        field="header.Content-Type",
        title="Unsupported media type",
        expected="image/png",
    ),
)
_EMPTY = problem(
    "No object in the request",
    example(422, "validation-failed", "body: the object is empty", field="body"),
)
TokenPath = Annotated[
    str, Path(description="The token of a presigned URL (everything after /objects/).")
]


def _local_store(request: Request) -> LocalObjectStore:
    store = getattr(request.app.state, "object_store", None)
    if not isinstance(store, LocalObjectStore):
        raise NotFound("Object storage is not served by this API.")
    return store


def _same_type(given: str | None, expected: str) -> bool:
    return (given or "").strip().lower() == expected.strip().lower()


def _check_type(given: str | None, claims: UrlClaims, field: str) -> None:
    expected = claims.content_type or ""
    if not _same_type(given, expected):
        raise UnsupportedType(f"This URL accepts only {expected}.", field=field, expected=expected)


def _too_large(claims: UrlClaims) -> TooLarge:
    return TooLarge(
        f"The object exceeds {claims.max_bytes} bytes.", field="body", max_bytes=claims.max_bytes
    )


def _declared_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        raise InvalidInput(
            "Content-Length is not a number.", field="header.Content-Length"
        ) from None


async def _store(store: LocalObjectStore, claims: UrlClaims, data: bytes) -> Response:
    if not data:
        raise InvalidInput("body: the object is empty", field="body")
    await store.put(claims.key, data, claims.content_type or "application/octet-stream")
    info = await store.head(claims.key)
    return Response(status_code=204, headers={"ETag": f'"{info.etag}"'} if info else None)


@router.put(
    f"{OBJECTS_PATH}/{{token}}",
    status_code=204,
    summary="Upload an object to a presigned URL (local backend)",
    response_class=Response,
    responses={
        204: {"description": "Stored", "headers": {"ETag": {"schema": {"type": "string"}}}},
        403: _FORBIDDEN,
        404: _NOT_FOUND,
        413: _TOO_LARGE,
        415: _WRONG_TYPE,
        422: _EMPTY,
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
        },
    },
)
async def upload_put(token: TokenPath, request: Request) -> Response:
    store = _local_store(request)
    claims = store.verify_token(token, "upload")
    _check_type(request.headers.get("content-type"), claims, "header.Content-Type")
    limit = claims.max_bytes or 0
    declared = _declared_length(request)
    if declared is not None and declared > limit:
        raise _too_large(claims)
    data = bytearray()
    async for chunk in request.stream():
        if len(data) + len(chunk) > limit:
            raise _too_large(claims)
        data += chunk
    return await _store(store, claims, bytes(data))


class _FormUpload:
    """Collects a presigned-POST form as it streams: small fields before the file, the
    file itself up to the URL's limit, nothing after it (as S3 does)."""

    def __init__(self, claims: UrlClaims) -> None:
        self.claims = claims
        self.limit = claims.max_bytes or 0
        self.fields: dict[str, str] = {}
        self.file: bytearray | None = None
        self.file_done = False
        self.parts = 0
        self._headers: dict[str, str] = {}
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._name: str | None = None
        self._value = bytearray()
        self._in_file = False

    def parser(self, boundary: bytes) -> MultipartParser:
        return MultipartParser(
            boundary,
            {
                "on_part_begin": self._part_begin,
                "on_header_field": self._header_field,
                "on_header_value": self._header_value_cb,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
            },
        )

    def _part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise InvalidInput(f"The form has more than {MAX_PARTS} parts.", field="body")
        self._headers, self._name, self._value = {}, None, bytearray()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_cb(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        name = self._header_name.decode("latin-1").strip().lower()
        self._headers[name] = self._header_value.decode("latin-1").strip()
        self._header_name, self._header_value = bytearray(), bytearray()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get("content-disposition", ""))
        name = options.get(b"name")
        self._name = name.decode("utf-8", "replace") if name is not None else None
        if self._name == "file" and self.file is None:
            # S3 takes the object's type from the form's Content-Type field.
            given = self._field("content-type") or self._headers.get("content-type")
            _check_type(given, self.claims, "body.Content-Type")
            self.file, self._in_file = bytearray(), True

    def _field(self, name: str) -> str | None:
        return next((v for k, v in self.fields.items() if k.lower() == name), None)

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            assert self.file is not None
            if len(self.file) + (end - start) > self.limit:
                raise _too_large(self.claims)
            self.file += data[start:end]
        elif self.file is None:
            if len(self._value) + (end - start) > MAX_FIELD_BYTES:
                raise InvalidInput(
                    f"A form field is longer than {MAX_FIELD_BYTES} bytes.", field="body"
                )
            self._value += data[start:end]
        # Parts after the file are ignored, as S3 ignores them.

    def _part_end(self) -> None:
        if self._in_file:
            self._in_file, self.file_done = False, True
        elif self.file is None and self._name is not None:
            self.fields[self._name] = self._value.decode("utf-8", "replace")


@router.post(
    f"{OBJECTS_PATH}/{{token}}",
    status_code=204,
    summary="Upload an object as a presigned-POST form (local backend)",
    response_class=Response,
    responses={
        204: {"description": "Stored", "headers": {"ETag": {"schema": {"type": "string"}}}},
        400: problem(
            "The form is malformed",
            example(400, "bad-request", "The multipart form is malformed.", field="body"),
        ),
        403: _FORBIDDEN,
        404: _NOT_FOUND,
        413: _TOO_LARGE,
        415: _WRONG_TYPE,
        422: problem(
            "No file in the form, or it is empty",
            example(422, "validation-failed", "body.file: missing", field="body.file"),
        ),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {
                            "Content-Type": {"type": "string"},
                            "file": {"type": "string", "format": "binary"},
                        },
                    }
                }
            },
        },
    },
)
async def upload_post(token: TokenPath, request: Request) -> Response:
    store = _local_store(request)
    claims = store.verify_token(token, "upload")
    media_type, options = parse_options_header(request.headers.get("content-type"))
    boundary = options.get(b"boundary")
    if media_type != b"multipart/form-data" or not boundary:
        raise SwitchboardError(
            "Send the upload as multipart/form-data, or PUT the raw bytes.",
            status=415,
            code="unsupported-media-type",
            title="Unsupported media type",
            field="header.Content-Type",
        )
    declared = _declared_length(request)
    if declared is not None and declared > (claims.max_bytes or 0) + FORM_OVERHEAD:
        raise _too_large(claims)
    form = _FormUpload(claims)
    received, limit = 0, (claims.max_bytes or 0) + FORM_OVERHEAD
    try:
        parser = form.parser(boundary)
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise _too_large(claims)
            parser.write(chunk)
        parser.finalize()
    except FormParserError:
        raise SwitchboardError(
            "The multipart form is malformed.", status=400, code="bad-request", field="body"
        ) from None
    if form.file is None:
        raise InvalidInput("body.file: missing", field="body.file")
    if not form.file_done:
        raise SwitchboardError(
            "The multipart form ends inside the file.", status=400, code="bad-request", field="body"
        )
    return await _store(store, claims, bytes(form.file))


@router.get(
    f"{OBJECTS_PATH}/{{token}}",
    summary="Download an object from a presigned URL (local backend)",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The object, as an attachment",
            "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
            "headers": {
                "Content-Disposition": {"schema": {"type": "string"}},
                "X-Content-Type-Options": {"schema": {"type": "string"}},
            },
        },
        403: _FORBIDDEN,
        404: _NOT_FOUND,
    },
)
async def download(token: TokenPath, request: Request) -> StreamingResponse:
    store = _local_store(request)
    claims = store.verify_token(token, "download")
    info = await store.head(claims.key)
    try:
        data = await store.get(claims.key) if info is not None else None
    except ObjectMissing:
        data = None
    if info is None or data is None:
        raise NotFound("No such object.")

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(data), CHUNK):
            yield data[start : start + CHUNK]

    filename = claims.filename or claims.key.rsplit("/", 1)[-1]
    headers: dict[str, Any] = {
        "Content-Disposition": content_disposition(filename),
        "Content-Length": str(len(data)),
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
        "Cache-Control": "private, no-store",
        "ETag": f'"{info.etag}"',
    }
    return StreamingResponse(chunks(), media_type=info.content_type, headers=headers)
