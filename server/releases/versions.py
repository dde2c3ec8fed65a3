"""Semantic versions (MAJOR.MINOR.PATCH[-prerelease]) ordered the way semver.org orders them.

Build metadata (`+...`) is refused rather than ignored: two packages that differ only there would
compare equal, and a version names exactly one package.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

_SEMVER = re.compile(
    r"(0|[1-9]\d{0,5})\.(0|[1-9]\d{0,5})\.(0|[1-9]\d{0,5})"
    r"(?:-((?:0|[1-9]\d{0,5}|\d*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9]\d{0,5}|\d*[A-Za-z-][0-9A-Za-z-]*))*))?"
)


class InvalidVersion(ValueError):
    pass


@total_ordering
@dataclass(frozen=True)
class Version:
    major: int
    minor: int
    patch: int
    pre: tuple[int | str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> "Version":
        match = _SEMVER.fullmatch(text.strip()) if isinstance(text, str) and len(text) <= 64 else None
        if match is None:
            raise InvalidVersion(f"{text!r} is not a version like 1.4.0 or 1.5.0-beta.1")
        pre = tuple(int(p) if p.isdigit() else p for p in match.group(4).split(".")) if match.group(4) else ()
        return cls(int(match.group(1)), int(match.group(2)), int(match.group(3)), pre)

    def _key(self) -> tuple:
        # A release sorts after its prereleases; numeric identifiers sort before alphanumeric ones.
        pre = tuple((0, p, "") if isinstance(p, int) else (1, 0, p) for p in self.pre)
        return (self.major, self.minor, self.patch, 0 if self.pre else 1, pre)

    def __lt__(self, other: "Version") -> bool:
        return self._key() < other._key()

    def __str__(self) -> str:
        core = f"{self.major}.{self.minor}.{self.patch}"
        return core + ("-" + ".".join(str(p) for p in self.pre) if self.pre else "")


def parse(text: str) -> Version:
    return Version.parse(text)


def is_valid(text: str) -> bool:
    try:
        Version.parse(text)
    except InvalidVersion:
        return False
    return True
