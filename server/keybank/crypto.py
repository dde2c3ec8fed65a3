"""Provider secrets at rest: AES-256-GCM under a versioned master key.

The associated data binds a ciphertext to its row id and provider, so a ciphertext copied onto
another row (or relabelled as another provider's key) fails authentication instead of decrypting.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from server.settings import Settings

NONCE_BYTES = 12


class KeyDecryptError(Exception):
    """A stored secret could not be decrypted: unknown master key version or tampered data."""


@dataclass(frozen=True)
class Sealed:
    ciphertext: bytes
    nonce: bytes
    key_version: str


def associated_data(key_id: int, provider: str) -> bytes:
    return f"provider_keys:{int(key_id)}:{provider}".encode()


class KeyCipher:
    def __init__(self, master_keys: dict[str, bytes], active_version: str) -> None:
        if active_version not in master_keys:
            raise ValueError("the active master key version is not among the master keys")
        self._ciphers = {version: AESGCM(key) for version, key in master_keys.items()}
        self.active_version = active_version

    @classmethod
    def from_settings(cls, settings: Settings) -> "KeyCipher":
        return cls(settings.master_keys, settings.keybank_active_version)

    def encrypt(self, key_id: int, provider: str, secret: str) -> Sealed:
        nonce = os.urandom(NONCE_BYTES)
        ciphertext = self._ciphers[self.active_version].encrypt(nonce, secret.encode(), associated_data(key_id, provider))
        return Sealed(ciphertext=ciphertext, nonce=nonce, key_version=self.active_version)

    def decrypt(self, key_id: int, provider: str, sealed: Sealed) -> str:
        cipher = self._ciphers.get(sealed.key_version)
        if cipher is None:
            raise KeyDecryptError(f"key #{key_id} is encrypted under master key version {sealed.key_version!r}, which is not configured")
        try:
            plaintext = cipher.decrypt(bytes(sealed.nonce), bytes(sealed.ciphertext), associated_data(key_id, provider))
        except InvalidTag:
            raise KeyDecryptError(f"key #{key_id} failed authentication (tampered, moved, or wrong master key)") from None
        return plaintext.decode()
