"""Ed25519 keys that sign update manifests, and the canonical JSON they sign.

UPDATE_SIGNING_KEY holds one or more base64 raw private keys separated by commas. Every configured
key signs every manifest: during a rotation the old and the new key are both set, so panels that pin
either one keep verifying. A key id is derived from the public key (never configured by hand, so it
cannot name the wrong key): the first 16 hex digits of its SHA-256.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


class SigningKeyError(ValueError):
    pass


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private: Ed25519PrivateKey
    public_b64: str

    def sign(self, data: bytes) -> str:
        return base64.b64encode(self.private.sign(data)).decode()


def key_id(public_raw: bytes) -> str:
    return hashlib.sha256(public_raw).hexdigest()[:16]


def load_keys(setting: str) -> list[SigningKey]:
    keys = []
    for item in setting.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            raw = base64.b64decode(item, validate=True)
        except (binascii.Error, ValueError):
            raise SigningKeyError("UPDATE_SIGNING_KEY entries must be base64 Ed25519 private keys") from None
        if len(raw) != 32:
            raise SigningKeyError("UPDATE_SIGNING_KEY entries must be 32 bytes (base64)")
        private = Ed25519PrivateKey.from_private_bytes(raw)
        public_raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        keys.append(SigningKey(key_id(public_raw), private, base64.b64encode(public_raw).decode()))
    if not keys:
        raise SigningKeyError("UPDATE_SIGNING_KEY must hold at least one key")
    if len({k.kid for k in keys}) != len(keys):
        raise SigningKeyError("UPDATE_SIGNING_KEY lists the same key twice")
    return keys


def generate() -> tuple[str, str, str]:
    """A new key pair: (private base64 for UPDATE_SIGNING_KEY, public base64 for the panel, key id)."""
    private = Ed25519PrivateKey.generate()
    private_raw = private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    public_raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(private_raw).decode(), base64.b64encode(public_raw).decode(), key_id(public_raw)


def canonical(document: Any) -> bytes:
    """Sorted keys, no insignificant whitespace, UTF-8: one byte string per document."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def signature_header(keys: list[SigningKey], data: bytes) -> str:
    """`kid:signature` pairs separated by commas (base64 has no commas or colons)."""
    return ",".join(f"{k.kid}:{k.sign(data)}" for k in keys)


def verify(public_b64: str, data: bytes, signature_b64: str) -> bool:
    """For tests and tools; the panel does its own verification."""
    from cryptography.exceptions import InvalidSignature

    try:
        Ed25519PublicKey.from_public_bytes(base64.b64decode(public_b64)).verify(base64.b64decode(signature_b64), data)
    except (InvalidSignature, ValueError):
        return False
    return True
