"""Storage of generated audio behind one small interface (content addressed, validated keys)."""

from server.storage.service import (
    AudioNotFound,
    AudioStorage,
    InvalidKey,
    LocalStorage,
    key_for,
    validate_key,
)

__all__ = ["AudioNotFound", "AudioStorage", "InvalidKey", "LocalStorage", "key_for", "validate_key"]
