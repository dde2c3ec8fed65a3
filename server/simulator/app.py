"""The simulated ElevenLabs HTTP API (the subset the proxy uses) plus /_sim admin routes.

Paths, parameters, headers and JSON shapes follow what the official `elevenlabs` SDK sends
and parses, so production code runs unchanged against it with only `base_url` changed.
Errors are FastAPI-shaped like the real service: `{"detail": {"status", "message"}}`, and
`{"detail": [...]}` with 422 for malformed requests.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from typing import Any, Awaitable, Callable

from aiohttp import web

from server.simulator import catalog, synth
from server.simulator.state import FAULTS, Fault, SimKey, SimulatorState, mask

log = logging.getLogger("server.simulator")

STATE = web.AppKey("sim_state", SimulatorState)
CACHE = web.AppKey("sim_cache", synth.AudioCache)
WORKERS = web.AppKey("sim_workers", asyncio.Semaphore)
CLOSING = web.AppKey("sim_closing", asyncio.Event)
FRESH_TAKES = web.AppKey("sim_fresh_takes", bool)

_POLL_SECONDS = 0.02
_CHUNK = 16 * 1024
_CORRUPT_BODY = b"<!DOCTYPE html><html><body><h1>502 upstream cache error</h1></body></html>\n" * 24
_EARLY_FAULTS = {"429_concurrency", "429_busy", "401_invalid", "401_quota", "401_permissions", "500", "503", "reset"}


def create_simulator_app(state: SimulatorState | None = None, *, cache_bytes: int = 64 * 1024 * 1024,
                         max_workers: int = 4, fresh_takes: bool = True) -> web.Application:
    """`max_workers` bounds simultaneous encoder/speech processes and synthesis threads.

    `fresh_takes`: like the real service, every sound-generation request gets a new take (a random
    seed per request). False gives every request for one prompt the same take, from the cache: for
    benchmarks, which measure the proxy rather than the synthesis."""
    app = web.Application(middlewares=[error_middleware], client_max_size=2 * 1024 * 1024)
    app[STATE] = state if state is not None else SimulatorState()
    app[FRESH_TAKES] = fresh_takes
    app[CACHE] = synth.AudioCache(cache_bytes)
    app[WORKERS] = asyncio.Semaphore(max_workers)
    app[CLOSING] = asyncio.Event()
    app.on_shutdown.append(_release_waiters)
    app.router.add_post("/v1/sound-generation", sound_generation)
    app.router.add_post("/v1/text-to-speech/{voice_id}", text_to_speech)
    app.router.add_post("/v1/text-to-speech/{voice_id}/stream", text_to_speech_stream)
    app.router.add_get("/v1/voices", voices_v1)
    app.router.add_get("/v1/voices/{voice_id}", voice_detail)
    app.router.add_get("/v2/voices", voices_v2)
    app.router.add_get("/v1/user/subscription", subscription)
    app.router.add_get("/v1/user", user)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/_sim/previews/{voice_id}.mp3", voice_preview)
    app.router.add_post("/_sim/keys", admin_add_key)
    app.router.add_post("/_sim/faults", admin_inject)
    app.router.add_delete("/_sim/faults", admin_clear_faults)
    app.router.add_post("/_sim/usage", admin_set_usage)
    app.router.add_get("/_sim/stats", admin_stats)
    app.router.add_get("/_sim/requests", admin_requests)
    return app


async def _release_waiters(app: web.Application) -> None:
    # Hung and slow requests end at shutdown instead of holding it up.
    app[CLOSING].set()


# --- errors -------------------------------------------------------------------------------

class SimError(Exception):
    """An ElevenLabs-shaped error: HTTP status plus detail.status/message."""

    def __init__(self, http_status: int, status: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.http_status, self.status, self.message, self.headers = http_status, status, message, headers or {}


class SimValidationError(Exception):
    """A request FastAPI would reject before the handler: 422 with a list of problems."""

    def __init__(self, errors: list[dict]) -> None:
        super().__init__("validation")
        self.errors = errors


def _invalid(loc: tuple, kind: str, msg: str, value: Any = None, **ctx: Any) -> SimValidationError:
    item = {"type": kind, "loc": list(loc), "msg": msg, "input": value}
    if ctx:
        item["ctx"] = ctx
    return SimValidationError([item])


@web.middleware
async def error_middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
    try:
        return await handler(request)
    except SimError as exc:
        _finish_log(request, exc.http_status)
        return web.json_response({"detail": {"status": exc.status, "message": exc.message}},
                                 status=exc.http_status, headers=exc.headers)
    except SimValidationError as exc:
        _finish_log(request, 422)
        return web.json_response({"detail": exc.errors}, status=422)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return web.json_response({"detail": exc.reason}, status=exc.status)
    except synth.SynthesisError:
        log.exception("simulator synthesis failed")
        _finish_log(request, 500)
        return _detail(500, "internal_server_error", "An internal error occurred while generating audio.")


def _detail(http_status: int, status: str, message: str) -> web.Response:
    return web.json_response({"detail": {"status": status, "message": message}}, status=http_status)


# --- request plumbing ---------------------------------------------------------------------

_LOG_ENTRY = web.RequestKey("sim_log_entry", dict)


def _log_request(request: web.Request, key: SimKey | None) -> dict:
    entry = {
        "time": time.time(), "method": request.method, "path": request.path,
        "key": mask(key.api_key) if key else None,
        "query": dict(request.query), "body": None, "status": None, "fault": None,
    }
    request.app[STATE].requests.append(entry)
    request[_LOG_ENTRY] = entry
    if key is not None:
        key.requests += 1
    return entry


def _finish_log(request: web.Request, status: int) -> None:
    entry = request.get(_LOG_ENTRY)
    if entry is not None and entry["status"] is None:
        entry["status"] = status


def _authenticate(request: web.Request) -> SimKey:
    key = request.app[STATE].key(request.headers.get("xi-api-key"))
    _log_request(request, key)
    if key is None:
        raise SimError(401, "invalid_api_key", "Invalid API key")
    return key


async def _logged_body(request: web.Request) -> dict:
    body = await _json_body(request)
    request[_LOG_ENTRY]["body"] = body
    return body


async def _json_body(request: web.Request) -> dict:
    raw = await request.read()
    try:
        body = json.loads(raw or b"null")
    except ValueError:
        raise _invalid(("body", 0), "json_invalid", "JSON decode error", None, error="Expecting value")
    if not isinstance(body, dict):
        raise _invalid(("body",), "model_attributes_type", "Input should be a valid dictionary or object", body)
    return body


def _output_format(request: web.Request) -> catalog.OutputFormat:
    name = request.query.get("output_format") or catalog.DEFAULT_OUTPUT_FORMAT
    fmt = catalog.OUTPUT_FORMATS.get(name)
    if fmt is None:
        raise _invalid(("query", "output_format"), "enum", "Input should be a valid output format", name,
                       expected=", ".join(sorted(catalog.OUTPUT_FORMATS)))
    return fmt


def _number(body: dict, name: str, low: float, high: float, default: float | None) -> float | None:
    value = body.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _invalid(("body", name), "float_type", "Input should be a valid number", value)
    if value < low:
        raise _invalid(("body", name), "greater_than_equal", f"Input should be greater than or equal to {low}", value, ge=low)
    if value > high:
        raise _invalid(("body", name), "less_than_equal", f"Input should be less than or equal to {high}", value, le=high)
    return float(value)


def _text(body: dict, name: str = "text", required: bool = True) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if value is None:
        raise _invalid(("body", name), "missing", "Field required", body)
    if not isinstance(value, str):
        raise _invalid(("body", name), "string_type", "Input should be a valid string", value)
    if required and not value.strip():
        raise _invalid(("body", name), "string_too_short", "String should have at least 1 character", value, min_length=1)
    return value


async def _wait(request: web.Request, seconds: float) -> None:
    try:
        await asyncio.wait_for(request.app[CLOSING].wait(), seconds)
    except TimeoutError:
        pass


async def _hang(request: web.Request) -> web.Response:
    """Never answer: hold the connection until the client gives up or the simulator stops."""
    closing = request.app[CLOSING]
    while not closing.is_set() and request.transport is not None and not request.transport.is_closing():
        await _wait(request, _POLL_SECONDS)
    return _reset(request)


def _reset(request: web.Request) -> web.Response:
    # Closing the socket before any byte of the answer: clients see "disconnected without a response".
    if request.transport is not None:
        request.transport.close()
    return web.Response(status=204)


def _retry_headers(fault: Fault) -> dict[str, str]:
    return {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}


def _fault_error(fault: Fault, key: SimKey, permission: str) -> SimError:
    headers = _retry_headers(fault)
    kind = fault.kind
    if kind == "429_concurrency":
        return _concurrency_error(key, headers)
    if kind == "429_busy":
        return SimError(429, "system_busy", "Our services are experiencing high levels of traffic and your request "
                        "could not be processed. Please try again shortly.", headers)
    if kind == "401_invalid":
        return SimError(401, "invalid_api_key", "Invalid API key", headers)
    if kind == "401_quota":
        return _quota_error(key, max(key.remaining + 1, 100), headers)
    if kind == "401_permissions":
        return SimError(401, "missing_permissions", f"The API key you used is missing the permission {permission} "
                        "to execute this operation.", headers)
    if kind == "500":
        return SimError(500, "internal_server_error", "An internal server error occurred.", headers)
    return SimError(503, "service_unavailable", "The service is temporarily unavailable. Please try again later.", headers)


def _concurrency_error(key: SimKey, headers: dict[str, str] | None = None) -> SimError:
    return SimError(429, "too_many_concurrent_requests", "Too many concurrent requests. Your current subscription "
                    f"is associated with a maximum of {key.max_concurrency} concurrent requests. Please upgrade your "
                    "subscription or wait for other requests to finish.", headers)


def _quota_error(key: SimKey, needed: int, headers: dict[str, str] | None = None) -> SimError:
    return SimError(401, "quota_exceeded", f"This request exceeds your quota of {key.character_limit}. You have "
                    f"{key.remaining} credits remaining, while {needed} credits are required for this request.", headers)


async def _before(request: web.Request, key: SimKey, group: str, permission: str) -> tuple[Fault | None, web.Response | None]:
    """Take this call's injected fault; answer at once for faults that replace the response."""
    fault = request.app[STATE].take_fault(key, group)
    if fault is None:
        return None, None
    request[_LOG_ENTRY]["fault"] = fault.kind
    if fault.kind in _EARLY_FAULTS:
        if fault.delay:
            await _wait(request, fault.delay)
        if fault.kind == "reset":
            return fault, _reset(request)
        raise _fault_error(fault, key, permission)
    return fault, None


async def _delay(request: web.Request, fault: Fault | None) -> web.Response | None:
    if fault is None:
        return None
    if fault.kind == "hang":
        return await _hang(request)
    if fault.delay:
        await _wait(request, fault.delay)
    return None


async def _send(request: web.Request, fault: Fault | None, body: bytes, content_type: str,
                headers: dict[str, str], *, stream: bool) -> web.StreamResponse:
    """Write the answer, or the damaged answer an output fault asks for."""
    kind = fault.kind if fault else None
    _finish_log(request, 200)
    if kind == "empty":
        body = b""
    elif kind == "corrupt":
        body = _CORRUPT_BODY
    if kind == "truncated":
        resp = web.StreamResponse(headers=headers)
        resp.content_type = content_type
        resp.content_length = len(body)
        await resp.prepare(request)
        await resp.write(body[: max(1, len(body) // 2)])
        # Content-Length promised more than was sent: the client sees an incomplete body.
        if request.transport is not None:
            request.transport.close()
        return resp
    if not stream:
        return web.Response(body=body, content_type=content_type, headers=headers)
    resp = web.StreamResponse(headers=headers)
    resp.content_type = content_type
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    for offset in range(0, len(body), _CHUNK):
        await resp.write(body[offset:offset + _CHUNK])
    await resp.write_eof()
    return resp


# --- generation ---------------------------------------------------------------------------

async def _generate(request: web.Request, key: SimKey, *, permission: str, cost: int,
                    make_audio: Callable[[], Awaitable[bytes]], fmt: catalog.OutputFormat,
                    extra_headers: dict[str, str] | None = None, stream: bool = False) -> web.StreamResponse:
    fault, early = await _before(request, key, "generation", permission)
    if early is not None:
        return early
    if key.in_flight >= key.max_concurrency:
        key.rejected_concurrency += 1
        raise _concurrency_error(key)
    key.in_flight += 1
    key.peak_in_flight = max(key.peak_in_flight, key.in_flight)
    current = key.in_flight
    try:
        key.roll_quota(time.time())
        if cost > key.remaining:
            raise _quota_error(key, cost)
        delayed = await _delay(request, fault)
        if delayed is not None:
            return delayed
        audio = await make_audio()
        key.character_count += cost
        headers = {
            "character-cost": str(cost),
            "request-id": secrets.token_hex(10),
            "current-concurrent-requests": str(current),
            "maximum-concurrent-requests": str(key.max_concurrency),
            **(extra_headers or {}),
        }
        return await _send(request, fault, audio, fmt.content_type, headers, stream=stream)
    finally:
        key.in_flight -= 1


async def _cached_audio(request: web.Request, cache_key: tuple, make_pcm: Callable[[], Awaitable[bytes]],
                        fmt: catalog.OutputFormat, *, cache: bool = True) -> bytes:
    app = request.app

    async def make() -> bytes:
        async with app[WORKERS]:
            return await synth.encode(await make_pcm(), fmt)

    # A take made for one request only would just push reusable clips out of the cache.
    return await app[CACHE].get_or_make(cache_key, make) if cache else await make()


async def sound_generation(request: web.Request) -> web.StreamResponse:
    key = _authenticate(request)
    body = await _logged_body(request)
    fmt = _output_format(request)
    prompt = _text(body)
    duration = _number(body, "duration_seconds", catalog.SFX_MIN_SECONDS, catalog.SFX_MAX_SECONDS, None)
    _number(body, "prompt_influence", 0.0, 1.0, 0.3)
    loop = bool(body.get("loop") or False)
    model_id = body.get("model_id") or catalog.DEFAULT_SFX_MODEL
    if model_id not in catalog.SFX_MODELS:
        raise SimError(400, "model_not_found", f"A model with model_id {model_id} was not found.")
    length = duration if duration is not None else synth.automatic_duration(prompt)
    take = secrets.randbits(32) if request.app[FRESH_TAKES] else 0

    async def make_pcm() -> bytes:
        return await asyncio.get_running_loop().run_in_executor(
            None, lambda: synth.synth_sfx(prompt, length, loop=loop, sample_rate=fmt.sample_rate, take=take))

    cache_key = ("sfx", " ".join(prompt.lower().split()), round(length, 3), loop, fmt.name, take)
    return await _generate(
        request, key, permission="sound_generation", cost=catalog.sfx_cost(duration), fmt=fmt,
        make_audio=lambda: _cached_audio(request, cache_key, make_pcm, fmt, cache=not request.app[FRESH_TAKES]),
    )


async def text_to_speech(request: web.Request) -> web.StreamResponse:
    return await _tts(request, stream=False)


async def text_to_speech_stream(request: web.Request) -> web.StreamResponse:
    return await _tts(request, stream=True)


async def _tts(request: web.Request, *, stream: bool) -> web.StreamResponse:
    key = _authenticate(request)
    body = await _logged_body(request)
    fmt = _output_format(request)
    text = _text(body)
    _text(body, "previous_text", required=False)
    _text(body, "next_text", required=False)
    speed = _voice_speed(body.get("voice_settings"))
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= 4294967295):
        raise _invalid(("body", "seed"), "int_type", "Input should be an integer between 0 and 4294967295", seed)
    model = catalog.TTS_MODELS.get(body.get("model_id") or catalog.DEFAULT_TTS_MODEL)
    if model is None:
        raise SimError(400, "model_not_found", f"A model with model_id {body.get('model_id')} was not found.")
    if len(text) > model.max_characters:
        raise SimError(400, "max_character_limit_exceeded", f"You are sending {len(text)} characters in a single "
                       f"request, but the maximum allowed for this model is {model.max_characters} characters.")
    voice_id = request.match_info["voice_id"]
    voice = request.app[STATE].find_voice(key, voice_id)
    if voice is None:
        # The current API answers 404 (older versions used 400); both carry status voice_not_found.
        raise SimError(404, "voice_not_found", f"A voice with the voice_id {voice_id} was not found.")
    variant, pitch = catalog.espeak_voice(voice)

    async def make_pcm() -> bytes:
        return await synth.synth_speech(text, espeak_variant=variant, pitch=pitch, speed=speed, sample_rate=fmt.sample_rate)

    return await _generate(
        request, key, permission="text_to_speech", cost=catalog.tts_cost(model, text), fmt=fmt, stream=stream,
        extra_headers={"history-item-id": secrets.token_hex(10)},
        make_audio=lambda: _cached_audio(request, ("tts", text, voice_id, model.model_id, speed, fmt.name), make_pcm, fmt),
    )


def _voice_speed(settings: Any) -> float:
    if settings is None:
        return 1.0
    if not isinstance(settings, dict):
        raise _invalid(("body", "voice_settings"), "model_attributes_type", "Input should be a valid dictionary", settings)
    for name in ("stability", "similarity_boost", "style"):
        value = settings.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1):
            raise _invalid(("body", "voice_settings", name), "less_than_equal", "Input should be between 0 and 1", value)
    speed = settings.get("speed")
    if speed is None:
        return 1.0
    if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not 0.7 <= speed <= 1.2:
        raise _invalid(("body", "voice_settings", "speed"), "less_than_equal", "Input should be between 0.7 and 1.2", speed)
    return float(speed)


# --- account endpoints --------------------------------------------------------------------

async def _account_call(request: web.Request, permission: str, build: Callable[[SimKey], Any]) -> web.StreamResponse:
    key = _authenticate(request)
    fault, early = await _before(request, key, "account", permission)
    if early is not None:
        return early
    delayed = await _delay(request, fault)
    if delayed is not None:
        return delayed
    key.roll_quota(time.time())
    body = json.dumps(build(key)).encode()
    return await _send(request, fault, body, "application/json", {}, stream=False)


def _base_url(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


async def voices_v1(request: web.Request) -> web.StreamResponse:
    base = _base_url(request)
    return await _account_call(request, "voices_read", lambda key: {
        "voices": [catalog.voice_json(v, base) for v in request.app[STATE].voices_for(key)]})


async def voice_detail(request: web.Request) -> web.StreamResponse:
    voice_id = request.match_info["voice_id"]

    def build(key: SimKey) -> dict:
        voice = request.app[STATE].find_voice(key, voice_id)
        if voice is None:
            raise SimError(404, "voice_not_found", f"A voice with the voice_id {voice_id} was not found.")
        return catalog.voice_json(voice, _base_url(request))

    return await _account_call(request, "voices_read", build)


async def voices_v2(request: web.Request) -> web.StreamResponse:
    query = request.query
    try:
        page_size = int(query.get("page_size", "10"))
        start = int(query.get("next_page_token") or 0)
    except ValueError:
        raise _invalid(("query", "page_size"), "int_parsing", "Input should be a valid integer", query.get("page_size"))
    if not 1 <= page_size <= 100:
        raise _invalid(("query", "page_size"), "less_than_equal", "Input should be between 1 and 100", page_size)

    def build(key: SimKey) -> dict:
        voices = _filter_voices(request.app[STATE].voices_for(key), query)
        page = voices[start:start + page_size]
        more = start + page_size < len(voices)
        return {"voices": [catalog.voice_json(v, _base_url(request)) for v in page], "has_more": more,
                "total_count": len(voices), "next_page_token": str(start + page_size) if more else None}

    return await _account_call(request, "voices_read", build)


def _filter_voices(voices: list[dict], query: Any) -> list[dict]:
    search = (query.get("search") or "").lower()
    category = query.get("category")
    voice_type = query.get("voice_type")
    if search:
        voices = [v for v in voices if search in v["name"].lower() or search in (v.get("description") or "").lower()]
    if category:
        voices = [v for v in voices if v["category"] == category]
    if voice_type in ("personal", "non-default", "workspace"):
        voices = [v for v in voices if v["category"] != "premade"]
    elif voice_type == "default":
        voices = [v for v in voices if v["category"] == "premade"]
    if query.get("sort") == "name":
        voices = sorted(voices, key=lambda v: v["name"], reverse=query.get("sort_direction") == "desc")
    return voices


def _subscription_json(key: SimKey) -> dict:
    return {
        "tier": key.tier, "character_count": key.character_count, "character_limit": key.character_limit,
        "max_character_limit_extension": 0, "max_credit_limit_extension": 0,
        "can_extend_character_limit": False, "allowed_to_extend_character_limit": False,
        "next_character_count_reset_unix": key.reset_unix, "voice_slots_used": len(key.voices),
        "professional_voice_slots_used": 0, "professional_voice_slots_used_in_workspace": 0,
        "voice_limit": 30, "max_voice_add_edits": 95, "voice_add_edit_counter": len(key.voices),
        "professional_voice_limit": 1, "can_extend_voice_limit": False, "can_use_instant_voice_cloning": True,
        "can_use_professional_voice_cloning": key.tier not in ("free", "starter"), "currency": "usd",
        "current_overage": {"amount": "0", "currency": "usd"}, "status": "free" if key.tier == "free" else "active",
        "billing_period": "monthly_period", "character_refresh_period": "monthly_period",
    }


async def subscription(request: web.Request) -> web.StreamResponse:
    return await _account_call(request, "user_read", _subscription_json)


async def user(request: web.Request) -> web.StreamResponse:
    return await _account_call(request, "user_read", lambda key: {
        "user_id": key.user_id, "workspace_id": f"ws_{key.user_id[:12]}", "subscription": _subscription_json(key),
        "is_new_user": False, "can_use_delayed_payment_methods": False, "is_onboarding_completed": True,
        "is_onboarding_checklist_completed": True, "first_name": key.label, "is_api_key_hashed": True,
        "xi_api_key_preview": f"sk_...{key.last4}", "created_at": key.created_unix, "seat_type": "workspace_admin",
    })


async def models(request: web.Request) -> web.StreamResponse:
    return await _account_call(request, "models_read", lambda key: [catalog.model_json(m) for m in catalog.TTS_MODELS.values()])


async def voice_preview(request: web.Request) -> web.StreamResponse:
    """Public preview clips, like the CDN links of the real voices (no key needed)."""
    voice = request.app[STATE].any_voice(request.match_info["voice_id"])
    if voice is None:
        raise web.HTTPNotFound()
    fmt = catalog.OUTPUT_FORMATS[catalog.DEFAULT_OUTPUT_FORMAT]
    variant, pitch = catalog.espeak_voice(voice)
    text = f"Hello, my name is {voice['name']}. This is how I sound."
    audio = await _cached_audio(
        request, ("preview", voice["voice_id"]),
        lambda: synth.synth_speech(text, espeak_variant=variant, pitch=pitch, speed=1.0, sample_rate=fmt.sample_rate), fmt)
    return web.Response(body=audio, content_type=fmt.content_type)


# --- admin (/_sim) ------------------------------------------------------------------------

async def _admin_body(request: web.Request) -> dict:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(reason="body must be JSON")
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(reason="body must be a JSON object")
    return body


def _admin_call(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except (ValueError, TypeError, KeyError) as exc:
        raise web.HTTPBadRequest(reason=str(exc))


async def admin_add_key(request: web.Request) -> web.Response:
    body = await _admin_body(request)
    allowed = {"api_key", "character_limit", "max_concurrency", "tier", "voices", "label", "character_count",
               "reset_unix", "quota_period"}
    unknown = set(body) - allowed
    if unknown:
        raise web.HTTPBadRequest(reason=f"unknown fields: {sorted(unknown)}")
    key = _admin_call(lambda: request.app[STATE].add_key(body.pop("api_key"), **body))
    return web.json_response(key.public(), status=201)


async def admin_inject(request: web.Request) -> web.Response:
    body = await _admin_body(request)
    fault = _admin_call(lambda: request.app[STATE].inject(
        body["api_key"], body["fault"], times=body.get("times"), delay=float(body.get("delay") or 0.0),
        retry_after=body.get("retry_after"), scope=body.get("scope")))
    return web.json_response(fault.public(), status=201)


async def admin_clear_faults(request: web.Request) -> web.Response:
    body = await _admin_body(request)
    _admin_call(lambda: request.app[STATE].clear_faults(body.get("api_key")))
    return web.Response(status=204)


async def admin_set_usage(request: web.Request) -> web.Response:
    body = await _admin_body(request)
    _admin_call(lambda: request.app[STATE].set_usage(
        body["api_key"], character_count=body.get("character_count"), reset_unix=body.get("reset_unix")))
    return web.Response(status=204)


async def admin_stats(request: web.Request) -> web.Response:
    stats = request.app[STATE].stats()
    cache = request.app[CACHE].stats
    stats["cache"] = {"hits": cache.hits, "misses": cache.misses, "entries": cache.entries, "bytes": cache.bytes}
    stats["faults"] = sorted(FAULTS)
    return web.json_response(stats)


async def admin_requests(request: web.Request) -> web.Response:
    limit = _admin_call(lambda: int(request.query.get("limit", "100")))
    entries = list(request.app[STATE].requests)[-limit:] if limit > 0 else []
    return web.json_response({"requests": entries})


# --- running it in-process ----------------------------------------------------------------

class RunningSimulator:
    """A simulator listening on a real TCP port (so the SDK's httpx client can reach it)."""

    def __init__(self, runner: web.AppRunner, url: str) -> None:
        self.runner, self.url = runner, url

    @property
    def state(self) -> SimulatorState:
        return self.runner.app[STATE]

    async def aclose(self) -> None:
        await self.runner.cleanup()

    async def __aenter__(self) -> "RunningSimulator":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def start_simulator(state: SimulatorState | None = None, *, host: str = "127.0.0.1", port: int = 0,
                          **app_options: Any) -> RunningSimulator:
    """Start on `port` (0: a free one) and return it; `async with await start_simulator(...)` stops it."""
    runner = web.AppRunner(create_simulator_app(state, **app_options), access_log=None, shutdown_timeout=2)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1]
    return RunningSimulator(runner, f"http://{host}:{bound}")
