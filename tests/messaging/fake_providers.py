"""Twilio, Meta's Graph API and WeChat on 127.0.0.1, in a thread of the test process,
speaking the wire formats our messaging adapters meet:

- Twilio ``POST /2010-04-01/Accounts/{sid}/Messages.json``: HTTP basic auth (AccountSid,
  auth token), form fields, ``201`` JSON with an ``SM...`` sid; errors as
  ``{code, message, more_info, status}``. A WhatsApp template goes by its Content SID
  (``twilio_content``: one of the account's approved templates, with so many variables;
  else 21655) with ``ContentVariables``, a JSON object of string keys "1".."n" to
  non-empty text (else 21656; variables without a ContentSid 21654); a ContentSid with a
  Body or MediaUrl is refused too. ``twilio_templates`` records what each one sent.
- Graph ``POST /{version}/{phone_number_id}/messages`` (WhatsApp Cloud API) and
  ``POST /{version}/me/messages`` (Messenger): bearer tokens, JSON; errors as
  ``{"error": {message, type, code, fbtrace_id}}``. WhatsApp templates must be approved
  for the number (``approve_template``: name, language, body parameter count; else error
  132001, a wrong count 132000); Messenger's ``MESSAGE_TAG`` needs a known ``tag``.
- WeChat ``POST /cgi-bin/stable_token`` and ``POST /cgi-bin/message/custom/send``: HTTP
  200 with ``errcode``/``errmsg`` for every outcome, as WeChat does. The stable token is
  the same for every caller until it expires (a new one in its last 5 minutes, the old
  one still good until then); ``force_refresh`` replaces it and the old one is invalid
  from then on, at most once in 30 s and 20 times a day per app (errcode 45009). Time is
  ``wechat_now``, which tests move (``wechat_advance``), so nothing sleeps.

And the media customers send, as each provider serves it:

- Twilio ``GET /2010-04-01/Accounts/{sid}/Messages/{MM}/Media/{ME}`` (basic auth), a
  redirect to the file on a CDN path;
- Graph ``GET /{version}/{media id}`` (bearer): JSON with a ``url`` (and ``mime_type``,
  ``sha256``, ``file_size``), then that URL with the same bearer;
- Messenger attachment URLs on a CDN path, no credentials;
- WeChat ``GET /cgi-bin/media/get?access_token=&media_id=``: the file, or errcode JSON.

Every request is recorded. ``fail_next`` makes the next requests answer an error;
``wechat_refuse`` makes WeChat refuse a token it still hands out (until a forced refresh).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.live_server import FakeService

_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_GRAPH = re.compile(r"^/(v[0-9]+\.[0-9]+)/([^/]+)/messages$")
_TWILIO = re.compile(r"^/2010-04-01/Accounts/([^/]+)/Messages\.json$")
_TWILIO_MEDIA = re.compile(r"^/2010-04-01/Accounts/([^/]+)/Messages/[^/]+/Media/[^/]+$")
_GRAPH_NODE = re.compile(r"^/(v[0-9]+\.[0-9]+)/([0-9]+)$")
# The message tags Messenger takes (https://developers.facebook.com/docs/messenger-platform/
# send-messages/message-tags).
_MESSENGER_TAGS = (
    "ACCOUNT_UPDATE",
    "CONFIRMED_EVENT_UPDATE",
    "POST_PURCHASE_UPDATE",
    "HUMAN_AGENT",
)


@dataclass
class Raw:
    """An answer that is not JSON (a file, a redirect)."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


Answer = tuple[int, dict[str, Any]]


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    @property
    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode(), keep_blank_values=True)

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class _Failure:
    status: int
    body: dict[str, Any] | None
    count: int


@dataclass
class FakeProviders(FakeService):
    # Twilio: AccountSid -> auth token; Content SID -> (AccountSid, variable count); the
    # content templates sent: (Content SID, variables).
    twilio_accounts: dict[str, str] = field(default_factory=dict)
    twilio_contents: dict[str, tuple[str, int]] = field(default_factory=dict)
    twilio_templates: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    # Graph: access token -> the phone_number_id (WhatsApp) or page id (Messenger) it serves.
    whatsapp_tokens: dict[str, str] = field(default_factory=dict)
    page_tokens: dict[str, str] = field(default_factory=dict)
    # WhatsApp: (phone_number_id, template name, language) -> body parameter count.
    whatsapp_templates: dict[tuple[str, str, str], int] = field(default_factory=dict)
    # WeChat: AppID -> secret; every token issued -> AppID, and when it expires; each
    # app's current stable token; tokens replaced by a forced refresh or refused; each
    # app's forced refreshes (times); the time now (seconds), moved by the tests.
    wechat_apps: dict[str, str] = field(default_factory=dict)
    wechat_tokens: dict[str, str] = field(default_factory=dict)
    wechat_expiry: dict[str, float] = field(default_factory=dict)
    wechat_current: dict[str, str] = field(default_factory=dict)
    wechat_invalid: set[str] = field(default_factory=set)
    wechat_forced: dict[str, list[float]] = field(default_factory=dict)
    wechat_now: float = 1_795_000_000.0
    # Media: path -> (bytes, content type); Graph media ids -> (bytes, content type).
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    graph_media: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    wechat_media: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    _failures: list[_Failure] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(_Handler):
            providers = fake

        return Handler

    # -- set-up ----------------------------------------------------------------------------

    def twilio_account(self) -> tuple[str, str]:
        sid, token = "AC" + secrets.token_hex(16), secrets.token_hex(16)
        self.twilio_accounts[sid] = token
        return sid, token

    def twilio_content(self, sid: str, variables: int) -> str:
        """A content template approved for WhatsApp on the account, with so many body
        variables: its Content SID."""
        content_sid = "HX" + secrets.token_hex(16)
        self.twilio_contents[content_sid] = (sid, variables)
        return content_sid

    def whatsapp_number(self) -> tuple[str, str]:
        number_id, token = str(secrets.randbelow(10**15) + 10**14), "EAAG" + secrets.token_hex(20)
        self.whatsapp_tokens[token] = number_id
        return number_id, token

    def approve_template(self, number_id: str, name: str, language: str, parameters: int) -> None:
        """A template approved for the WhatsApp number, with so many body placeholders."""
        self.whatsapp_templates[(number_id, name, language)] = parameters

    def messenger_page(self) -> tuple[str, str]:
        page_id, token = str(secrets.randbelow(10**15) + 10**14), "EAAP" + secrets.token_hex(20)
        self.page_tokens[token] = page_id
        return page_id, token

    def wechat_app(self) -> tuple[str, str]:
        appid, secret = "wx" + secrets.token_hex(8), secrets.token_hex(16)
        self.wechat_apps[appid] = secret
        return appid, secret

    def twilio_media(self, sid: str, data: bytes, content_type: str) -> str:
        """A file a customer sent to Twilio: its MediaUrl."""
        path = f"/2010-04-01/Accounts/{sid}/Messages/MM{secrets.token_hex(16)}/Media/ME{secrets.token_hex(16)}"
        self.files[path] = (data, content_type)
        return self.url + path

    def whatsapp_media(self, data: bytes, content_type: str) -> str:
        """A file a customer sent on WhatsApp: its media id."""
        media_id = str(secrets.randbelow(10**15) + 10**15)
        self.graph_media[media_id] = (data, content_type)
        return media_id

    def messenger_media(self, data: bytes, content_type: str) -> str:
        """A file a customer sent on Messenger: its attachment URL."""
        path = f"/fb-cdn/{secrets.token_hex(12)}"
        self.files[path] = (data, content_type)
        return self.url + path

    def wechat_file(self, data: bytes, content_type: str) -> str:
        """A file a customer sent on WeChat: its MediaId."""
        # Starts with a letter, as WeChat's do: a leading "_" or "-" would be (rightly)
        # stripped from the stored filename and make the test's expectation random.
        media_id = "M" + secrets.token_urlsafe(24)
        self.wechat_media[media_id] = (data, content_type)
        return media_id

    def fail_next(self, status: int, *, body: dict[str, Any] | None = None, count: int = 1) -> None:
        """Answer the next ``count`` requests with ``status`` (and ``body``, else an error
        body in the shape of the provider the request is for)."""
        self._failures.append(_Failure(status, body, count))

    def wechat_advance(self, seconds: float) -> None:
        """WeChat's clock moves on (token lifetimes, the forced-refresh limits)."""
        with self._lock:
            self.wechat_now += seconds

    def wechat_refuse(self, token: str) -> None:
        """WeChat refuses ``token`` (errcode 40001) though stable_token still hands it
        out: a leaked token reset on WeChat's side. Only a forced refresh replaces it."""
        with self._lock:
            self.wechat_invalid.add(token)

    def made(self, path_pattern: str) -> list[Recorded]:
        return [r for r in self.requests if re.fullmatch(path_pattern, r.path)]

    # -- protocol ----------------------------------------------------------------------------

    def handle(self, rec: Recorded) -> Answer | Raw:
        with self._lock:
            self.requests.append(rec)
            failure = self._failures[0] if self._failures else None
            if failure is not None:
                failure.count -= 1
                if failure.count <= 0:
                    self._failures.pop(0)
        if failure is not None:
            return failure.status, failure.body or self._error_body(rec.path, failure.status)
        if m := _TWILIO.fullmatch(rec.path):
            return self.twilio_send(m[1], rec)
        if m := _TWILIO_MEDIA.fullmatch(rec.path):
            return self.twilio_file(m[1], rec)
        if rec.path.startswith("/cdn/"):  # where Twilio's media URLs redirect to
            return self.file(rec.path.removeprefix("/cdn"))
        if rec.path.startswith("/fb-cdn/"):
            return self.file(rec.path)
        if rec.path.startswith("/wa-media/"):
            return self.whatsapp_file(rec)
        if m := _GRAPH_NODE.fullmatch(rec.path):
            return self.graph_media_info(m[2], rec)
        if rec.path == "/cgi-bin/media/get":
            return self.wechat_media_get(rec)
        if rec.path == "/cgi-bin/stable_token":
            return self.wechat_stable_token(rec)
        if rec.path == "/cgi-bin/message/custom/send":
            return self.wechat_send(rec)
        if m := _GRAPH.fullmatch(rec.path):
            return self.graph_send(m[2], rec)
        return 404, {"error": "not found"}

    def _error_body(self, path: str, status: int) -> dict[str, Any]:
        if _TWILIO.fullmatch(path):
            return self.twilio_error(status, 20500 if status >= 500 else 20429, "Service error")[1]
        if path.startswith("/cgi-bin/"):
            return {"errcode": -1, "errmsg": "system error"}
        return self.graph_error(
            status, 2 if status >= 500 else 4, "Service temporarily unavailable"
        )[1]

    # Twilio ---------------------------------------------------------------------------------

    def twilio_error(self, status: int, code: int, message: str) -> Answer:
        return status, {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        }

    def _twilio_auth_ok(self, sid: str, rec: Recorded) -> bool:
        """HTTP basic auth with the account's sid and auth token."""
        auth = rec.headers.get("authorization", "")
        user, password = "", ""
        if auth.startswith("Basic "):
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
        token = self.twilio_accounts.get(user)
        return token is not None and secrets.compare_digest(password, token) and user == sid

    def twilio_send(self, sid: str, rec: Recorded) -> Answer:
        if not self._twilio_auth_ok(sid, rec):
            return self.twilio_error(401, 20003, "Authenticate")
        if rec.method != "POST":
            return self.twilio_error(405, 20004, "Method not allowed")
        form = {k: v for k, v in rec.form.items()}
        to = (form.get("To") or [""])[0]
        sender = (form.get("From") or [""])[0]
        if not to:
            return self.twilio_error(400, 21604, "A 'To' phone number is required.")
        if not sender and not form.get("MessagingServiceSid"):
            return self.twilio_error(400, 21603, "A 'From' phone number is required.")
        whatsapp = to.startswith("whatsapp:")
        if not _E164.match(to.removeprefix("whatsapp:")):
            return self.twilio_error(400, 21211, f"Invalid 'To' Phone Number: {to}")
        if sender and whatsapp != sender.startswith("whatsapp:"):
            return self.twilio_error(
                400, 63007, "Twilio could not find a Channel with the From address"
            )
        body = (form.get("Body") or [""])[0]
        media = form.get("MediaUrl") or []
        content_sid = (form.get("ContentSid") or [""])[0]
        if content_sid or form.get("ContentVariables"):
            refused = self._twilio_content(sid, content_sid, form, bool(body or media))
            if refused is not None:
                return refused
        elif not body and not media:
            return self.twilio_error(400, 21602, "Message body is required.")
        message_sid = "SM" + secrets.token_hex(16)
        return 201, {
            "account_sid": sid,
            "api_version": "2010-04-01",
            "body": body,
            "date_created": "Tue, 24 Nov 2026 09:30:00 +0000",
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": sender or None,
            "messaging_service_sid": next(iter(form.get("MessagingServiceSid") or []), None),
            "num_media": str(len(media)),
            "num_segments": "1",
            "sid": message_sid,
            "status": "queued",
            "to": to,
            "uri": f"/2010-04-01/Accounts/{sid}/Messages/{message_sid}.json",
        }

    def _twilio_content(
        self, sid: str, content_sid: str, form: dict[str, list[str]], has_body: bool
    ) -> Answer | None:
        """The Content API's rules for a template send; None when it may go (and then
        it is recorded in ``twilio_templates``)."""
        if not content_sid:
            return self.twilio_error(400, 21654, "ContentSid Required")
        if has_body:
            return self.twilio_error(
                400, 21619, "A message with a ContentSid takes no Body or MediaUrl"
            )
        known = self.twilio_contents.get(content_sid)
        if known is None or known[0] != sid:
            return self.twilio_error(400, 21655, "The ContentSid is Invalid")
        raw = (form.get("ContentVariables") or ["{}"])[0]
        try:
            variables = json.loads(raw)
        except ValueError:
            variables = None
        # A JSON object's keys are strings; they must be exactly "1".."n".
        expected = {str(i) for i in range(1, known[1] + 1)}
        if not (
            isinstance(variables, dict)
            and set(variables) == expected
            and all(isinstance(v, str) and v for v in variables.values())
        ):
            return self.twilio_error(400, 21656, "The ContentVariables Parameter is invalid")
        with self._lock:
            self.twilio_templates.append((content_sid, variables))
        return None

    # Media --------------------------------------------------------------------------------

    def file(self, path: str) -> Answer | Raw:
        found = self.files.get(path)
        if found is None:
            return Raw(404, b"Not Found", {"Content-Type": "text/plain"})
        return Raw(200, found[0], {"Content-Type": found[1]})

    def twilio_file(self, sid: str, rec: Recorded) -> Answer | Raw:
        if not self._twilio_auth_ok(sid, rec):
            return self.twilio_error(401, 20003, "Authenticate")
        if rec.path not in self.files:
            return self.twilio_error(404, 20404, "The requested resource was not found")
        # Twilio answers with a redirect to its media CDN.
        return Raw(302, b"", {"Location": f"{self.url}/cdn{rec.path}"})

    def _bearer_ok(self, rec: Recorded) -> bool:
        auth = rec.headers.get("authorization", "")
        return auth.startswith("Bearer ") and auth[7:] in self.whatsapp_tokens

    def graph_media_info(self, media_id: str, rec: Recorded) -> Answer | Raw:
        if not self._bearer_ok(rec):
            return self.graph_error(401, 190, "Invalid OAuth access token")
        found = self.graph_media.get(media_id)
        if found is None:
            return self.graph_error(400, 100, "Unsupported get request.", "GraphMethodException")
        data, content_type = found
        return 200, {
            "messaging_product": "whatsapp",
            "url": f"{self.url}/wa-media/{media_id}?ext=1&hash=AT0",
            "mime_type": content_type,
            "sha256": hashlib.sha256(data).hexdigest(),
            "file_size": len(data),
            "id": media_id,
        }

    def whatsapp_file(self, rec: Recorded) -> Answer | Raw:
        if not self._bearer_ok(rec):
            return Raw(401, b"", {"Content-Type": "text/plain"})
        found = self.graph_media.get(rec.path.removeprefix("/wa-media/"))
        if found is None:
            return Raw(404, b"", {"Content-Type": "text/plain"})
        return Raw(200, found[0], {"Content-Type": found[1]})

    def wechat_media_get(self, rec: Recorded) -> Answer | Raw:
        q = {k: v[0] for k, v in rec.query.items()}
        refused = self._wechat_token_refused(q.get("access_token", ""))
        if refused is not None:
            return refused
        media_id = q.get("media_id", "")
        found = self.wechat_media.get(media_id)
        if found is None:
            return 200, {"errcode": 40007, "errmsg": "invalid media_id"}
        extension = {"image/jpeg": ".jpg", "image/png": ".png"}.get(found[1], "")
        return Raw(
            200,
            found[0],
            {
                "Content-Type": found[1],
                "Content-disposition": f'attachment; filename="{media_id}{extension}"',
            },
        )

    # Graph ----------------------------------------------------------------------------------

    def graph_error(
        self, status: int, code: int, message: str, kind: str = "OAuthException"
    ) -> Answer:
        return status, {
            "error": {
                "message": message,
                "type": kind,
                "code": code,
                "fbtrace_id": "A" + secrets.token_hex(10),
            }
        }

    def graph_send(self, node: str, rec: Recorded) -> Answer:
        auth = rec.headers.get("authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else ""
        try:
            payload = rec.json
        except ValueError:
            return self.graph_error(400, 100, "Invalid parameter")
        if node == "me":
            page_id = self.page_tokens.get(token)
            if page_id is None:
                return self.graph_error(
                    401, 190, "Invalid OAuth access token - Cannot parse access token"
                )
            recipient = (payload.get("recipient") or {}).get("id")
            message = payload.get("message") or {}
            if not recipient or not (message.get("text") or message.get("attachment")):
                return self.graph_error(
                    400, 100, "(#100) Param message must be non-empty", "OAuthException"
                )
            kind = payload.get("messaging_type")
            if kind not in ("RESPONSE", "UPDATE", "MESSAGE_TAG"):
                return self.graph_error(400, 100, "(#100) Invalid messaging_type")
            if kind == "MESSAGE_TAG" and payload.get("tag") not in _MESSENGER_TAGS:
                return self.graph_error(
                    400, 100, "(#100) Tag is required for MESSAGE_TAG messaging type"
                )
            return 200, {"recipient_id": recipient, "message_id": "m_" + secrets.token_urlsafe(40)}
        if self.whatsapp_tokens.get(token) != node:
            return self.graph_error(
                401, 190, "Invalid OAuth access token - Cannot parse access token"
            )
        if payload.get("messaging_product") != "whatsapp":
            return self.graph_error(400, 100, "(#100) The parameter messaging_product is required.")
        to, kind = payload.get("to"), payload.get("type")
        if not isinstance(to, str) or not to.lstrip("+").isdigit():
            return self.graph_error(400, 100, "(#100) Invalid parameter")
        content = payload.get(kind) if isinstance(kind, str) else None
        if kind == "text" and not (isinstance(content, dict) and content.get("body")):
            return self.graph_error(400, 100, "(#100) The parameter text['body'] is required.")
        if kind == "template":
            return self.whatsapp_template(node, to, content)
        if kind in ("image", "video", "audio", "document") and not (
            isinstance(content, dict) and (content.get("link") or content.get("id"))
        ):
            return self.graph_error(400, 100, f"(#100) The parameter {kind}['link'] is required.")
        return self.whatsapp_accepted(to)

    def whatsapp_accepted(self, to: str) -> Answer:
        return 200, {
            "messaging_product": "whatsapp",
            "contacts": [{"input": to, "wa_id": to.lstrip("+")}],
            "messages": [{"id": "wamid.HBgL" + secrets.token_urlsafe(30)}],
        }

    def whatsapp_template(self, node: str, to: str, content: Any) -> Answer:
        """A template message: approved for the number in that language, with as many
        body parameters (each ``{type: text, text}``) as it has placeholders."""
        if not isinstance(content, dict) or not isinstance(content.get("name"), str):
            return self.graph_error(400, 100, "(#100) The parameter template['name'] is required.")
        language = content.get("language")
        code = language.get("code") if isinstance(language, dict) else None
        if not isinstance(code, str) or not code:
            return self.graph_error(
                400, 100, "(#100) The parameter template['language']['code'] is required."
            )
        expected = self.whatsapp_templates.get((node, content["name"], code))
        if expected is None:
            return self.graph_error(
                404, 132001, "(#132001) Template name does not exist in the translation"
            )
        components = content.get("components", [])
        given = 0
        for component in components if isinstance(components, list) else [None]:
            if not isinstance(component, dict) or component.get("type") != "body":
                return self.graph_error(400, 100, "(#100) Invalid parameter")
            for parameter in component.get("parameters") or []:
                if not (
                    isinstance(parameter, dict)
                    and parameter.get("type") == "text"
                    and isinstance(parameter.get("text"), str)
                    and parameter["text"]
                ):
                    return self.graph_error(400, 131008, "(#131008) Required parameter is missing")
                given += 1
        if given != expected:
            return self.graph_error(
                400,
                132000,
                "(#132000) Number of parameters does not match the expected number of params",
            )
        return self.whatsapp_accepted(to)

    # WeChat ---------------------------------------------------------------------------------

    def wechat_stable_token(self, rec: Recorded) -> Answer:
        if rec.method != "POST":
            return 200, {"errcode": 43002, "errmsg": "require POST method"}
        try:
            q = rec.json
        except ValueError:
            return 200, {"errcode": 47001, "errmsg": "data format error"}
        if not isinstance(q, dict) or q.get("grant_type") != "client_credential":
            return 200, {"errcode": 40002, "errmsg": "invalid grant_type"}
        appid = q.get("appid")
        secret = self.wechat_apps.get(appid) if isinstance(appid, str) else None
        if appid is None or secret is None:
            return 200, {"errcode": 40013, "errmsg": "invalid appid"}
        given = q.get("secret")
        if not isinstance(given, str) or not secrets.compare_digest(given, secret):
            return 200, {"errcode": 40125, "errmsg": "invalid appsecret"}
        force = q.get("force_refresh", False)
        if not isinstance(force, bool):
            return 200, {"errcode": 40097, "errmsg": "invalid args"}
        with self._lock:
            now = self.wechat_now
            current = self.wechat_current.get(appid)
            if force:
                forced = [t for t in self.wechat_forced.get(appid, []) if now - t < 86400]
                if (forced and now - forced[-1] < 30) or len(forced) >= 20:
                    return 200, {"errcode": 45009, "errmsg": "reach max api daily quota limit"}
                self.wechat_forced[appid] = [*forced, now]
                if current is not None:
                    self.wechat_invalid.add(current)
                current = None
            elif current is not None and now >= self.wechat_expiry[current] - 300:
                current = None  # renewed in its last 5 minutes; it works until it expires
            if current is None:
                current = secrets.token_urlsafe(60)
                self.wechat_tokens[current] = appid
                self.wechat_expiry[current] = now + 7200
                self.wechat_current[appid] = current
            return 200, {
                "access_token": current,
                "expires_in": int(self.wechat_expiry[current] - now),
            }

    def _wechat_token_refused(self, token: str) -> Answer | None:
        with self._lock:
            if token not in self.wechat_tokens or token in self.wechat_invalid:
                return 200, {
                    "errcode": 40001,
                    "errmsg": "invalid credential, access_token is invalid or not latest "
                    "rid: 6f1e2d",
                }
            if self.wechat_now >= self.wechat_expiry[token]:
                return 200, {"errcode": 42001, "errmsg": "access_token expired rid: 6f1e2d"}
        return None

    def wechat_send(self, rec: Recorded) -> Answer:
        refused = self._wechat_token_refused((rec.query.get("access_token") or [""])[0])
        if refused is not None:
            return refused
        try:
            payload = rec.json
        except ValueError:
            return 200, {"errcode": 47001, "errmsg": "data format error"}
        if not payload.get("touser"):
            return 200, {"errcode": 40003, "errmsg": "invalid openid"}
        if payload.get("msgtype") != "text" or not (payload.get("text") or {}).get("content"):
            return 200, {"errcode": 40008, "errmsg": "invalid message type"}
        return 200, {"errcode": 0, "errmsg": "ok"}


class _Handler(BaseHTTPRequestHandler):
    providers: FakeProviders

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _serve(self, method: str) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        rec = Recorded(
            method=method,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        answer = self.providers.handle(rec)
        if isinstance(answer, Raw):
            status, data, headers = answer.status, answer.body, answer.headers
        else:
            status, data = answer[0], json.dumps(answer[1]).encode()
            headers = {"Content-Type": "application/json"}
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")
