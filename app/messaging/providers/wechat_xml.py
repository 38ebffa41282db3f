"""WeChat message push bodies and their protections: the webhook ``signature``, the XML
parser (size-capped, refusing any document type, so no entity is ever declared, fetched
or expanded) and the AES-256-CBC decryption of the "safe" mode's ``<Encrypt>`` envelope.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from xml.parsers import expat

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from app.messaging.providers.base import WebhookRefused

MAX_XML_BYTES = 64 * 1024
_CDATA = re.compile(r"<!\[CDATA\[.*?\]\]>", re.DOTALL)
_DECLARATIONS = "XML declarations (DOCTYPE, ENTITY) are refused"


def signature(*parts: str) -> str:
    """WeChat's signature: hex SHA-1 of the parts sorted and joined."""
    return hashlib.sha1("".join(sorted(parts)).encode(), usedforsecurity=False).hexdigest()


# -- XML ----------------------------------------------------------------------------------


def _screen(body: bytes, max_bytes: int) -> str:
    """The body as text, if it is small, UTF-8 and visibly declares no DTD or entity (a
    first pass with a clear reason; the parser's own refusal is what guarantees it)."""
    if len(body) > max_bytes:
        raise WebhookRefused("malformed", f"the XML body is larger than {max_bytes} bytes")
    try:
        text = body.decode("utf-8").lstrip("\ufeff")
    except UnicodeDecodeError:
        raise WebhookRefused("malformed", "the XML body is not UTF-8") from None
    # CDATA is literal text (a customer may well type "<!DOCTYPE"); outside it, any
    # markup declaration other than a comment is refused.
    outside = _CDATA.sub("", text)
    for at in (m.start() for m in re.finditer("<!", outside)):
        if not outside.startswith("<!--", at):
            raise WebhookRefused("malformed", _DECLARATIONS)
    return text


class _Declared(Exception):
    """The document declares a type (and with it, possibly, entities)."""


def _refuse_declaration(*_: object) -> None:
    raise _Declared


def _refuse_external(*_: object) -> int:
    raise _Declared


def parse_xml(body: bytes, *, max_bytes: int = MAX_XML_BYTES) -> dict[str, str]:
    """A WeChat message (``<xml><Tag>text</Tag>...</xml>``) as {tag: text}: the root's
    direct children, first of each name. WebhookRefused("malformed") otherwise.

    Parsed by expat directly, refusing a document type in the parser itself (a textual
    screen can be fooled: a ``<![CDATA[`` inside one comment and ``]]>`` inside a later
    one hide whatever lies between); without one, no entity can be declared, and a
    reference to an undeclared one is an error."""
    text = _screen(body, max_bytes)
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse_declaration
    parser.EntityDeclHandler = _refuse_declaration
    parser.ExternalEntityRefHandler = _refuse_external
    out: dict[str, str] = {}
    path: list[str] = []
    leaf: list[str] = []  # the text of the current child of the root
    nested = False  # the current child of the root has elements in it
    root: list[str] = []

    def start(tag: str, _attributes: object) -> None:
        nonlocal nested
        if not path:
            root.append(tag)
        elif len(path) == 1:
            leaf.clear()
            nested = False
        else:
            nested = True
        path.append(tag)

    def end(tag: str) -> None:
        path.pop()
        if len(path) == 1:
            out.setdefault(tag, "" if nested else "".join(leaf).strip())

    def data(chunk: str) -> None:
        if len(path) == 2:
            leaf.append(chunk)

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = data
    try:
        # A str: expat then reads UTF-8 whatever encoding a declaration claims, so a
        # UTF-16 label cannot change what is parsed.
        parser.Parse(text, True)
    except _Declared:
        raise WebhookRefused("malformed", _DECLARATIONS) from None
    except expat.ExpatError:
        raise WebhookRefused("malformed", "the body is not well-formed XML") from None
    if root != ["xml"]:
        raise WebhookRefused("malformed", "the root element is not <xml>")
    return out


# -- safe mode ----------------------------------------------------------------------------


def _aes_key(encoding_aes_key: str) -> bytes:
    try:
        key = base64.b64decode(encoding_aes_key + "=", validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise WebhookRefused(
            "malformed", "the channel's encoding_aes_key is not a 43-character key"
        )
    return key


def decrypt(encoding_aes_key: str, encrypted: str) -> tuple[bytes, str]:
    """The message and the AppID inside an ``<Encrypt>`` value: AES-256-CBC (IV = the
    key's first 16 bytes, PKCS#7 to 32 bytes) over 16 random bytes, the message's
    length (4 bytes, big-endian), the message and the AppID."""
    key = _aes_key(encoding_aes_key)
    try:
        data = base64.b64decode(encrypted, validate=True)
    except (binascii.Error, ValueError):
        raise WebhookRefused("malformed", "Encrypt is not base64") from None
    if not data or len(data) % 16:
        raise WebhookRefused("malformed", "Encrypt is not whole AES blocks")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    plain = decryptor.update(data) + decryptor.finalize()
    pad = plain[-1]
    if not 1 <= pad <= 32 or plain[-pad:] != bytes([pad]) * pad:
        raise WebhookRefused("malformed", "Encrypt does not decrypt with the channel's key")
    content = plain[16:-pad]
    if len(content) < 4:
        raise WebhookRefused("malformed", "Encrypt holds no message")
    size = int.from_bytes(content[:4], "big")
    if size > len(content) - 4:
        raise WebhookRefused("malformed", "Encrypt's message length is wrong")
    message, appid = content[4 : 4 + size], content[4 + size :]
    try:
        return message, appid.decode("utf-8")
    except UnicodeDecodeError:
        raise WebhookRefused("malformed", "Encrypt's AppID is not text") from None
