"""JWT signing keys: a JWKS of ES256 keys, one active signer, all of them verifiers.

Rotation: ``switchboard keys rotate`` adds a key and makes it the signer; older keys
keep verifying the tokens they signed until ``switchboard keys prune`` removes them
(after the access-token lifetime). In production the JWKS comes from configuration
(SWITCHBOARD_JWT_KEYS or SWITCHBOARD_JWT_KEYS_FILE, e.g. a mounted secret); in the
embedded mode it is generated once into the data directory with mode 0600.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet

from app.config import Settings

ALGORITHM = "ES256"


@dataclass
class SigningKeys:
    keyset: KeySet
    active_kid: str
    document: dict[str, Any]

    def signer(self) -> ECKey:
        key = self.keyset.get_by_kid(self.active_kid)
        assert isinstance(key, ECKey)
        return key

    def public_jwks(self) -> dict[str, Any]:
        return {
            "keys": [
                k.as_dict(private=False) | {"alg": ALGORITHM, "use": "sig"}
                for k in self.keyset.keys
            ]
        }


def new_key() -> dict[str, Any]:
    kid = time.strftime("%Y%m%d") + "-" + uuid.uuid4().hex[:8]
    return ECKey.generate_key("P-256", parameters={"kid": kid}, private=True).as_dict(private=True)


def load_document(settings: Settings) -> tuple[dict[str, Any], Path | None]:
    if settings.jwt_keys is not None:
        return json.loads(settings.jwt_keys.get_secret_value()), None
    path = settings.jwt_keys_file or (settings.data_dir / "jwt-keys.json")
    if path.exists():
        return json.loads(path.read_text()), path
    if settings.environment == "production":
        raise RuntimeError(
            "no JWT signing keys: set SWITCHBOARD_JWT_KEYS or SWITCHBOARD_JWT_KEYS_FILE"
        )
    key = new_key()
    doc = {"active_kid": key["kid"], "keys": [key]}
    write_document(path, doc)
    return doc, path


def write_document(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=2)
    os.replace(tmp, path)


def from_document(doc: dict[str, Any]) -> SigningKeys:
    keyset = KeySet.import_key_set({"keys": doc["keys"]})
    active = doc.get("active_kid") or doc["keys"][-1]["kid"]
    return SigningKeys(keyset=keyset, active_kid=active, document=doc)


def load_signing_keys(settings: Settings) -> SigningKeys:
    doc, _ = load_document(settings)
    return from_document(doc)


def rotate(path: Path) -> str:
    doc = json.loads(path.read_text()) if path.exists() else {"keys": []}
    key = new_key()
    doc["keys"].append(key)
    doc["active_kid"] = key["kid"]
    write_document(path, doc)
    return str(key["kid"])


def prune(path: Path, kid: str) -> None:
    doc = json.loads(path.read_text())
    if doc.get("active_kid") == kid:
        raise ValueError("cannot prune the active signing key; rotate first")
    doc["keys"] = [k for k in doc["keys"] if k.get("kid") != kid]
    write_document(path, doc)


def encode(keys: SigningKeys, claims: dict[str, Any]) -> str:
    return jwt.encode(
        {"alg": ALGORITHM, "kid": keys.active_kid, "typ": "at+jwt"}, claims, keys.signer()
    )


def decode(keys: SigningKeys, token: str, issuer: str) -> dict[str, Any] | None:
    """Verified claims, or None for any bad, foreign, expired or malformed token."""
    try:
        tok = jwt.decode(token, keys.keyset, algorithms=[ALGORITHM])
        registry = jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": issuer},
            exp={"essential": True},
            sub={"essential": True},
            tid={"essential": True},
        )
        registry.validate(tok.claims)
    except (JoseError, ValueError, KeyError, TypeError):
        return None
    return dict(tok.claims)
