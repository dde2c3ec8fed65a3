"""A local stand-in for the three LLM APIs the assist features call, speaking each wire format.

    /openai/v1/chat/completions, /openai/v1/models             (OPENAI_BASE_URL = <url>/openai/v1)
    /anthropic/v1/messages, /anthropic/v1/models               (ANTHROPIC_BASE_URL = <url>/anthropic)
    /gemini/v1beta/models/{model}:generateContent, .../models  (GEMINI_BASE_URL = <url>/gemini/)

Keys belong to one provider. Answers are canned and schema-valid (server/simulator/llm_replies.py)
and report token usage computed from the request and reply sizes, so metering can be checked
exactly against what the simulator said. Faults are injected per key, as in the ElevenLabs
simulator: busy (429 with Retry-After), quota, invalid, 500, timeout (no answer), malformed (the
model's text is not JSON), off_schema (JSON of the wrong shape), corrupt (a 200 that is not JSON).
Admin: POST /_sim/keys, POST|DELETE /_sim/faults, POST /_sim/replies, GET /_sim/stats, /_sim/requests.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from server.simulator.llm_replies import reply_for

PROVIDERS = ("openai", "anthropic", "gemini")
LLM_FAULTS = frozenset({"busy", "quota", "invalid", "500", "timeout", "malformed", "off_schema", "corrupt"})
_EARLY = {"busy", "quota", "invalid", "500"}
_OFF_SCHEMA = {"answer": "not what was asked"}


def mask(api_key: str) -> str:
    return api_key[-4:]


@dataclass
class LlmFault:
    kind: str
    times: int | None
    retry_after: float | None = None


@dataclass
class LlmKey:
    api_key: str = field(repr=False)
    provider: str
    label: str
    requests: int = 0
    tokens_used: int = 0
    faults: list[LlmFault] = field(default_factory=list)

    def public(self) -> dict[str, Any]:
        return {"provider": self.provider, "label": self.label, "last4": mask(self.api_key),
                "requests": self.requests, "tokens_used": self.tokens_used,
                "faults": [{"fault": f.kind, "times": f.times, "retry_after": f.retry_after} for f in self.faults]}


class LlmSimulatorState:
    """Keys, faults, forced replies and the request log. Secrets never leave `_keys`."""

    def __init__(self) -> None:
        self._keys: dict[str, LlmKey] = {}
        # schema name -> the JSON the model answers instead of the canned one (tests: out-of-range cues).
        self.replies: dict[str, dict[str, Any]] = {}
        # Newest last: {"provider", "path", "model", "key" (last 4), "status", "fault", "usage", "schema"}.
        self.requests: deque[dict[str, Any]] = deque(maxlen=5000)

    def add_key(self, provider: str, api_key: str, *, label: str | None = None) -> LlmKey:
        if provider not in PROVIDERS:
            raise ValueError(f"provider must be one of {', '.join(PROVIDERS)}")
        if len(api_key) < 8:
            raise ValueError("api_key must be at least 8 characters")
        key = self._keys[api_key] = LlmKey(api_key, provider, label or f"{provider}-{mask(api_key)}")
        return key

    def inject(self, api_key: str, fault: str, *, times: int | None = 1, retry_after: float | None = None) -> None:
        if fault not in LLM_FAULTS:
            raise ValueError(f"fault must be one of {', '.join(sorted(LLM_FAULTS))}")
        self._require(api_key).faults.append(LlmFault(fault, times, retry_after))

    def clear_faults(self, api_key: str | None = None) -> None:
        for key in self._keys.values() if api_key is None else [self._require(api_key)]:
            key.faults.clear()

    def take_fault(self, key: LlmKey) -> LlmFault | None:
        if not key.faults:
            return None
        fault = key.faults[0]
        if fault.times is not None:
            fault.times -= 1
            if fault.times <= 0:
                key.faults.pop(0)
        return fault

    def key(self, api_key: str | None, provider: str) -> LlmKey | None:
        key = self._keys.get(api_key or "")
        return key if key is not None and key.provider == provider else None

    def calls(self, provider: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.requests if provider is None or r["provider"] == provider]

    def stats(self) -> dict[str, Any]:
        return {"keys": [k.public() for k in self._keys.values()], "requests": len(self.requests)}

    def _require(self, api_key: str) -> LlmKey:
        try:
            return self._keys[api_key]
        except KeyError:
            raise KeyError("no such simulator key") from None


LLM_STATE = web.AppKey("llm_sim_state", LlmSimulatorState)
_CLOSING = web.AppKey("llm_sim_closing", asyncio.Event)


def create_llm_simulator_app(state: LlmSimulatorState | None = None) -> web.Application:
    app = web.Application(client_max_size=4 * 1024 * 1024)
    app[LLM_STATE] = state if state is not None else LlmSimulatorState()
    app[_CLOSING] = asyncio.Event()
    app.on_shutdown.append(_release_waiters)
    app.router.add_post("/openai/v1/chat/completions", openai_chat)
    app.router.add_get("/openai/v1/models", openai_models)
    app.router.add_post("/anthropic/v1/messages", anthropic_messages)
    app.router.add_get("/anthropic/v1/models", anthropic_models)
    app.router.add_post("/gemini/{version}/models/{call}", gemini_generate)
    app.router.add_get("/gemini/{version}/models", gemini_models)
    app.router.add_post("/_sim/keys", admin_add_key)
    app.router.add_post("/_sim/faults", admin_inject)
    app.router.add_delete("/_sim/faults", admin_clear)
    app.router.add_post("/_sim/replies", admin_reply)
    app.router.add_get("/_sim/stats", admin_stats)
    app.router.add_get("/_sim/requests", admin_requests)
    return app


async def _release_waiters(app: web.Application) -> None:
    app[_CLOSING].set()


# --- the shared path of every call ---------------------------------------------------------------


@dataclass
class Call:
    provider: str
    key: LlmKey | None
    entry: dict[str, Any]
    fault: LlmFault | None = None


def _begin(request: web.Request, provider: str, api_key: str | None) -> Call:
    state = request.app[LLM_STATE]
    key = state.key(api_key, provider)
    entry = {"time": time.time(), "provider": provider, "path": request.path, "model": None,
             "key": mask(key.api_key) if key else None, "status": None, "fault": None, "usage": None, "schema": None}
    state.requests.append(entry)
    call = Call(provider, key, entry)
    if key is not None:
        key.requests += 1
        call.fault = state.take_fault(key)
        entry["fault"] = call.fault.kind if call.fault else None
    return call


def _usage(system: str, user: str, schema: Any, reply_text: str) -> tuple[int, int]:
    """Tokens as the simulator reports them: about four bytes a token, prompt and reply apart."""
    prompt_bytes = len(system.encode()) + len(user.encode()) + len(json.dumps(schema or {}).encode())
    return 8 + math.ceil(prompt_bytes / 4), max(1, math.ceil(len(reply_text.encode()) / 4))


def _answer_text(state: LlmSimulatorState, call: Call, schema_name: str, user: str) -> str:
    if call.fault is not None and call.fault.kind == "malformed":
        return '{"prompts": [{"prompt": "cut off'
    if call.fault is not None and call.fault.kind == "off_schema":
        return json.dumps(_OFF_SCHEMA)
    return json.dumps(state.replies.get(schema_name) or reply_for(schema_name, user))


async def _hang(request: web.Request) -> web.Response:
    closing = request.app[_CLOSING]
    while not closing.is_set() and request.transport is not None and not request.transport.is_closing():
        try:
            await asyncio.wait_for(closing.wait(), 0.02)
        except TimeoutError:
            pass
    if request.transport is not None:
        request.transport.close()
    return web.Response(status=204)


def _finish(call: Call, status: int, usage: tuple[int, int] | None = None) -> None:
    call.entry["status"] = status
    if usage is not None:
        call.entry["usage"] = {"input_tokens": usage[0], "output_tokens": usage[1]}
        if call.key is not None:
            call.key.tokens_used += usage[0] + usage[1]


def _corrupt(call: Call) -> web.Response:
    _finish(call, 200)
    return web.Response(status=200, text="<html><body>502 upstream cache error</body></html>", content_type="application/json")


def _schema_by_properties(schema: Any) -> str:
    props = schema.get("properties", {}) if isinstance(schema, dict) else {}
    for name, field_name in (("sfx_prompts", "prompts"), ("spot_cues", "cues"), ("voice_script", "script")):
        if field_name in props:
            return name
    return ""


async def _accepted_fault(request: web.Request, call: Call) -> web.StreamResponse | None:
    """The faults of a request the provider accepted: it hangs, or answers a corrupt body."""
    if call.fault is not None and call.fault.kind == "timeout":
        return await _hang(request)
    if call.fault is not None and call.fault.kind == "corrupt":
        return _corrupt(call)
    return None


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


# --- OpenAI ----------------------------------------------------------------------------------------


def _openai_error(status: int, message: str, type_: str, code: str | None, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": {"message": message, "type": type_, "param": None, "code": code}},
                             status=status, headers=headers)


def _openai_fault(call: Call) -> web.Response | None:
    if call.key is None:
        _finish(call, 401)
        return _openai_error(401, "Incorrect API key provided. You can find your API key at "
                             "https://platform.openai.com/account/api-keys.", "invalid_request_error", "invalid_api_key")
    fault = call.fault
    if fault is None or fault.kind not in _EARLY:
        return None
    if fault.kind == "busy":
        _finish(call, 429)
        return _openai_error(429, "Rate limit reached for requests. Please try again shortly.", "requests",
                             "rate_limit_exceeded", _retry_after(fault, 2))
    if fault.kind == "quota":
        _finish(call, 429)
        return _openai_error(429, "You exceeded your current quota, please check your plan and billing details.",
                             "insufficient_quota", "insufficient_quota")
    if fault.kind == "invalid":
        _finish(call, 401)
        return _openai_error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
    _finish(call, 500)
    return _openai_error(500, "The server had an error while processing your request.", "server_error", None)


def _bearer(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else None


async def openai_chat(request: web.Request) -> web.StreamResponse:
    call = _begin(request, "openai", _bearer(request))
    if (early := _openai_fault(call) or await _accepted_fault(request, call)) is not None:
        return early
    body = await _json(request)
    messages = body.get("messages") or []
    system = "".join(str(m.get("content", "")) for m in messages if isinstance(m, dict) and m.get("role") == "system")
    user = "".join(str(m.get("content", "")) for m in messages if isinstance(m, dict) and m.get("role") == "user")
    fmt = (body.get("response_format") or {}).get("json_schema") or {}
    schema_name, schema = str(fmt.get("name") or ""), fmt.get("schema")
    text = _answer_text(request.app[LLM_STATE], call, schema_name, user)
    usage = _usage(system, user, schema, text)
    call.entry.update(model=body.get("model"), schema=schema_name)
    _finish(call, 200, usage)
    return web.json_response({
        "id": "chatcmpl-" + uuid.uuid4().hex[:24], "object": "chat.completion", "created": int(time.time()),
        "model": body.get("model") or "gpt-sim",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                     "finish_reason": "stop", "logprobs": None}],
        "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)},
    }, headers={"x-request-id": "req_" + uuid.uuid4().hex[:16]})


async def openai_models(request: web.Request) -> web.Response:
    call = _begin(request, "openai", _bearer(request))
    if (early := _openai_fault(call)) is not None:
        return early
    _finish(call, 200)
    return web.json_response({"object": "list", "data": [
        {"id": m, "object": "model", "created": 1700000000, "owned_by": "system"} for m in ("gpt-4.1-mini", "gpt-4.1")
    ]})


# --- Anthropic -----------------------------------------------------------------------------------


def _anthropic_error(status: int, type_: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"type": "error", "error": {"type": type_, "message": message}}, status=status,
                             headers={"request-id": "req_" + uuid.uuid4().hex[:16], **(headers or {})})


def _anthropic_fault(call: Call) -> web.Response | None:
    if call.key is None:
        _finish(call, 401)
        return _anthropic_error(401, "authentication_error", "invalid x-api-key")
    fault = call.fault
    if fault is None or fault.kind not in _EARLY:
        return None
    if fault.kind == "busy":
        _finish(call, 429)
        return _anthropic_error(429, "rate_limit_error", "Number of requests has exceeded your rate limit.",
                                _retry_after(fault, 2))
    if fault.kind == "quota":
        _finish(call, 400)
        return _anthropic_error(400, "invalid_request_error", "Your credit balance is too low to access the "
                                "Anthropic API. Please go to Plans & Billing to upgrade or purchase credits.")
    if fault.kind == "invalid":
        _finish(call, 401)
        return _anthropic_error(401, "authentication_error", "invalid x-api-key")
    _finish(call, 500)
    return _anthropic_error(500, "api_error", "Internal server error")


def _anthropic_key(request: web.Request) -> str | None:
    # The SDK sends the key as x-api-key or, in newer releases, as a bearer token.
    return request.headers.get("x-api-key") or _bearer(request)


async def anthropic_messages(request: web.Request) -> web.StreamResponse:
    call = _begin(request, "anthropic", _anthropic_key(request))
    if (early := _anthropic_fault(call) or await _accepted_fault(request, call)) is not None:
        return early
    body = await _json(request)
    system = body.get("system") if isinstance(body.get("system"), str) else json.dumps(body.get("system") or "")
    user = "".join(
        m["content"] if isinstance(m.get("content"), str) else json.dumps(m.get("content"))
        for m in body.get("messages") or [] if isinstance(m, dict)
    )
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict)]
    schema_name = str((body.get("tool_choice") or {}).get("name") or (tools[0].get("name") if tools else ""))
    schema = next((t.get("input_schema") for t in tools if t.get("name") == schema_name), None)
    text = _answer_text(request.app[LLM_STATE], call, schema_name, user)
    usage = _usage(system, user, schema, text)
    call.entry.update(model=body.get("model"), schema=schema_name)
    _finish(call, 200, usage)
    if call.fault is not None and call.fault.kind == "malformed":
        # What a model that ignored the forced tool looks like: text, no tool call.
        content = [{"type": "text", "text": text}]
        stop = "end_turn"
    else:
        content = [{"type": "tool_use", "id": "toolu_" + uuid.uuid4().hex[:20], "name": schema_name,
                    "input": json.loads(text)}]
        stop = "tool_use"
    return web.json_response({
        "id": "msg_" + uuid.uuid4().hex[:24], "type": "message", "role": "assistant",
        "model": body.get("model") or "claude-sim", "content": content, "stop_reason": stop, "stop_sequence": None,
        "usage": {"input_tokens": usage[0], "output_tokens": usage[1]},
    }, headers={"request-id": "req_" + uuid.uuid4().hex[:16]})


async def anthropic_models(request: web.Request) -> web.Response:
    call = _begin(request, "anthropic", _anthropic_key(request))
    if (early := _anthropic_fault(call)) is not None:
        return early
    _finish(call, 200)
    data = [{"type": "model", "id": m, "display_name": m, "created_at": "2025-10-01T00:00:00Z"}
            for m in ("claude-haiku-4-5", "claude-sonnet-4-5")]
    return web.json_response({"data": data, "has_more": False, "first_id": data[0]["id"], "last_id": data[-1]["id"]})


# --- Gemini --------------------------------------------------------------------------------------


def _gemini_error(status: int, state: str, message: str, details: list[dict] | None = None,
                  headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": {"code": status, "message": message, "status": state, "details": details or []}},
                             status=status, headers=headers)


def _gemini_fault(call: Call) -> web.Response | None:
    invalid = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}}]
    if call.key is None:
        _finish(call, 400)
        return _gemini_error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", invalid)
    fault = call.fault
    if fault is None or fault.kind not in _EARLY:
        return None
    if fault.kind in ("busy", "quota"):
        per = "PerMinute" if fault.kind == "busy" else "PerDay"
        delay = fault.retry_after if fault.retry_after is not None else 2
        details = [
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
             "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_content_requests",
                             "quotaId": f"GenerateRequests{per}PerProjectPerModel"}]},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{delay:g}s"},
        ]
        _finish(call, 429)
        return _gemini_error(429, "RESOURCE_EXHAUSTED", "You exceeded your current quota.", details,
                             _retry_after(fault, None) if fault.kind == "busy" else None)
    if fault.kind == "invalid":
        _finish(call, 400)
        return _gemini_error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", invalid)
    _finish(call, 500)
    return _gemini_error(500, "INTERNAL", "An internal error has occurred.")


def _gemini_key(request: web.Request) -> str | None:
    return request.headers.get("x-goog-api-key") or request.query.get("key")


async def gemini_generate(request: web.Request) -> web.StreamResponse:
    model, _, method = request.match_info["call"].partition(":")
    call = _begin(request, "gemini", _gemini_key(request))
    if method != "generateContent":
        _finish(call, 404)
        return _gemini_error(404, "NOT_FOUND", f"Method {method} is not supported by the simulator.")
    if (early := _gemini_fault(call) or await _accepted_fault(request, call)) is not None:
        return early
    body = await _json(request)
    system = "".join(p.get("text", "") for p in ((body.get("systemInstruction") or {}).get("parts") or []))
    user = "".join(
        p.get("text", "") for c in body.get("contents") or [] if isinstance(c, dict) for p in c.get("parts") or []
    )
    config = body.get("generationConfig") or {}
    schema = config.get("responseJsonSchema") or config.get("responseSchema")
    schema_name = _schema_by_properties(schema)
    text = _answer_text(request.app[LLM_STATE], call, schema_name, user)
    usage = _usage(system, user, schema, text)
    call.entry.update(model=model, schema=schema_name)
    _finish(call, 200, usage)
    return web.json_response({
        "candidates": [{"content": {"parts": [{"text": text}], "role": "model"}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": usage[0], "candidatesTokenCount": usage[1], "totalTokenCount": sum(usage)},
        "modelVersion": model, "responseId": uuid.uuid4().hex[:20],
    })


async def gemini_models(request: web.Request) -> web.Response:
    call = _begin(request, "gemini", _gemini_key(request))
    if (early := _gemini_fault(call)) is not None:
        return early
    _finish(call, 200)
    return web.json_response({"models": [
        {"name": f"models/{m}", "displayName": m, "supportedGenerationMethods": ["generateContent"]}
        for m in ("gemini-2.5-flash", "gemini-2.5-pro")
    ]})


def _retry_after(fault: LlmFault, default: float | None) -> dict[str, str]:
    value = fault.retry_after if fault.retry_after is not None else default
    return {"retry-after": f"{value:g}"} if value is not None else {}


# --- admin -----------------------------------------------------------------------------------------


async def admin_add_key(request: web.Request) -> web.Response:
    body = await _json(request)
    try:
        key = request.app[LLM_STATE].add_key(str(body.get("provider")), str(body.get("key") or ""), label=body.get("label"))
    except ValueError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response(key.public(), status=201)


async def admin_inject(request: web.Request) -> web.Response:
    body = await _json(request)
    try:
        request.app[LLM_STATE].inject(str(body.get("key") or ""), str(body.get("fault")), times=body.get("times", 1),
                                      retry_after=body.get("retry_after"))
    except (KeyError, ValueError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response({"ok": True})


async def admin_clear(request: web.Request) -> web.Response:
    request.app[LLM_STATE].clear_faults()
    return web.json_response({"ok": True})


async def admin_reply(request: web.Request) -> web.Response:
    body = await _json(request)
    if not isinstance(body.get("reply"), dict):
        return web.json_response({"error": "reply must be a JSON object"}, status=400)
    request.app[LLM_STATE].replies[str(body.get("schema_name"))] = body["reply"]
    return web.json_response({"ok": True})


async def admin_stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[LLM_STATE].stats())


async def admin_requests(request: web.Request) -> web.Response:
    return web.json_response({"requests": list(request.app[LLM_STATE].requests)[-200:]})


# --- running it in-process -------------------------------------------------------------------------


class RunningLlmSimulator:
    def __init__(self, runner: web.AppRunner, url: str) -> None:
        self.runner, self.url = runner, url

    @property
    def state(self) -> LlmSimulatorState:
        return self.runner.app[LLM_STATE]

    def base_urls(self) -> dict[str, str]:
        """Settings fields pointing each provider's SDK at this simulator."""
        return base_urls(self.url)

    async def aclose(self) -> None:
        await self.runner.cleanup()


def base_urls(url: str) -> dict[str, str]:
    url = url.rstrip("/")
    return {"openai_base_url": f"{url}/openai/v1", "anthropic_base_url": f"{url}/anthropic",
            "gemini_base_url": f"{url}/gemini/"}


async def start_llm_simulator(state: LlmSimulatorState | None = None, *, host: str = "127.0.0.1",
                              port: int = 0) -> RunningLlmSimulator:
    runner = web.AppRunner(create_llm_simulator_app(state), access_log=None, shutdown_timeout=2)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return RunningLlmSimulator(runner, f"http://{host}:{runner.addresses[0][1]}")
