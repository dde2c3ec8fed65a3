"""The assist prompts: versioned data files in server/assist/prompts/, one per feature.

Each file carries its version, the system and user text (the user text's `{input}` becomes the
request as JSON), the strict JSON schema the answer must follow, and the token ceiling. The
version is recorded on every assist request, so an answer can be traced to the words that asked.
"""

from __future__ import annotations

import functools
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from server.providers.llm import LlmRequest

PROMPTS_DIR = Path(__file__).parent / "prompts"


@dataclass(frozen=True)
class PromptTemplate:
    feature: str
    version: str
    system: str
    user: str
    schema_name: str
    schema: dict[str, Any] = field(repr=False)
    max_tokens: int
    temperature: float

    def render(self, data: dict[str, Any]) -> tuple[str, str]:
        """(system, user) with the request's input as JSON. Input is data, never template text."""
        return self.system, self.user.replace("{input}", json.dumps(data, ensure_ascii=False, indent=1))

    def request(self, model: str, data: dict[str, Any]) -> LlmRequest:
        system, user = self.render(data)
        return LlmRequest(model=model, system=system, user=user, schema_name=self.schema_name, schema=self.schema,
                          max_tokens=self.max_tokens, temperature=self.temperature)

    def token_ceiling(self, data: dict[str, Any]) -> int:
        """The most tokens a call can use: every prompt byte as a token (no tokenizer makes more
        tokens than UTF-8 bytes, beyond a few per message, allowed for) plus the reply's ceiling."""
        system, user = self.render(data)
        prompt_bytes = len(system.encode()) + len(user.encode()) + len(json.dumps(self.schema).encode())
        return prompt_bytes + 64 + self.max_tokens


@functools.cache
def load(feature: str) -> PromptTemplate:
    raw = tomllib.loads((PROMPTS_DIR / f"{feature}.toml").read_text(encoding="utf-8"))
    return PromptTemplate(
        feature=feature,
        version=str(raw["version"]),
        system=raw["system"].strip(),
        user=raw["user"].strip(),
        schema_name=raw["schema_name"],
        schema=json.loads(raw["schema"]),
        max_tokens=int(raw["max_tokens"]),
        temperature=float(raw["temperature"]),
    )
