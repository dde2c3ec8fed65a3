"""HTTP for the panel: create SFX and voice-overs, list voices, browse, download and delete history."""

from __future__ import annotations

import uuid

from aiohttp import web

from server.appkeys import SETTINGS
from server.auth.service import authenticate, require_verified_email
from server.generation.models import (
    AudioLink,
    GenerationOut,
    GenerationPage,
    GenerationsCreated,
    HistoryQuery,
    QueueOut,
    SfxRequest,
    VoiceList,
    VoiceOut,
    VoiceRequest,
)
from server.generation.naming import content_disposition
from server.generation.params import sfx_spec, voice_spec
from server.generation import GENERATION
from server.generation.service import PROVIDER, GenerationResult, GenerationService, Outcome
from server.storage.http import ObjectGone, serve_object
from server.web.api import ApiRoutes, json_response
from server.web.errors import NotFound

api = ApiRoutes("generation")

_AUDIO = {"content": {"audio/wav": {"schema": {"type": "string", "format": "binary"}},
                      "audio/mpeg": {"schema": {"type": "string", "format": "binary"}}}}
_CREATED_RESPONSES = {
    "200": {
        "description": "One result: the audio file (headers X-Generation-Id, X-Credits-Charged, X-Credits-Remaining, "
                       "X-Audio-Duration). With `Accept: application/json` or variations > 1: the JSON listing.",
        "content": {**_AUDIO["content"],
                    "application/json": {"schema": {"$ref": "#/components/schemas/GenerationsCreated"}}},
        "headers": {
            "X-Generation-Id": {"schema": {"type": "string", "format": "uuid"}},
            "X-Credits-Charged": {"schema": {"type": "integer"}},
            "X-Credits-Remaining": {"schema": {"type": "string"}, "description": "an integer, or `unlimited`"},
            "X-Audio-Duration": {"schema": {"type": "number"}},
        },
    },
    "503": {
        "description": "`capacity_exhausted`: every provider key stayed busy for KEY_WAIT_SECONDS (the request "
                       "waited in a fair line meanwhile; a panel shows \"waiting for a free generator\" when no "
                       "answer came within ~3 s), or this account already has KEY_WAIT_PER_USER requests waiting; "
                       "`storage_unavailable`: the audio store is unreachable. Nothing is charged; see Retry-After.",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    },
}
_CREATED_RESPONSES["403"] = {"description": "email_not_verified: the account's address is not confirmed yet"}
_IDEMPOTENCY = "Idempotency-Key"


def _service(request: web.Request) -> GenerationService:
    return request.app[GENERATION]


@api.post(
    "/v1/sfx", summary="Generate a sound effect (send an Idempotency-Key header)", body=SfxRequest,
    response=GenerationsCreated, responses=_CREATED_RESPONSES,
)
async def create_sfx(request: web.Request, body: SfxRequest) -> web.StreamResponse:
    user = await require_verified_email(request)
    spec = sfx_spec(body, model_id=request.app[SETTINGS].sfx_model_id)
    outcome = await _service(request).create(user.id, spec, request.headers.get(_IDEMPOTENCY),
                                             client_gone=_client_gone(request), plan_code=user.plan_code)
    return await _created(request, outcome, force_json=body.variations > 1)


@api.post(
    "/v1/voice", summary="Generate a voice-over (send an Idempotency-Key header)", body=VoiceRequest,
    response=GenerationsCreated, responses=_CREATED_RESPONSES,
)
async def create_voice(request: web.Request, body: VoiceRequest) -> web.StreamResponse:
    user = await require_verified_email(request)
    spec = voice_spec(body, default_model=request.app[SETTINGS].voice_model_id)
    outcome = await _service(request).create(user.id, spec, request.headers.get(_IDEMPOTENCY),
                                             client_gone=_client_gone(request), plan_code=user.plan_code)
    return await _created(request, outcome, force_json=False)


@api.get("/v1/voices", summary="Voices available for voice-overs", response=VoiceList)
async def list_voices(request: web.Request) -> web.Response:
    await authenticate(request)
    catalog = await _service(request).voices.get()
    voices = [VoiceOut.model_validate({k: v for k, v in voice.items() if k != "key_ids"}) for voice in catalog.voices]
    return json_response(VoiceList(voices=voices), headers={"Cache-Control": "private, max-age=60"})


@api.get("/v1/queue", summary="Your requests waiting for a free generator (for the panel's waiting notice)",
         response=QueueOut)
async def queue(request: web.Request) -> web.Response:
    user = await authenticate(request)
    waiting, ahead = await _service(request).keybank.line.waiting(PROVIDER, str(user.id))
    body = QueueOut(waiting=waiting, ahead=ahead, wait_limit_seconds=request.app[SETTINGS].key_wait_seconds)
    return json_response(body, headers={"Cache-Control": "no-store"})


@api.get("/v1/generations", summary="Your generations, newest first", query=HistoryQuery, response=GenerationPage)
async def list_generations(request: web.Request, query: HistoryQuery) -> web.Response:
    user = await authenticate(request)
    items, next_cursor = await _service(request).history(user.id, kind=query.kind, cursor=query.cursor, limit=query.limit)
    return json_response({"items": [_out(i) for i in items], "next_cursor": next_cursor},
                         headers={"Cache-Control": "no-store"})


@api.get("/v1/generations/{id}", summary="One of your generations", response=GenerationOut)
async def get_generation(request: web.Request) -> web.Response:
    user = await authenticate(request)
    item = await _service(request).get(user.id, _generation_id(request))
    return json_response(_out(item), headers={"Cache-Control": "no-store"})


@api.get(
    "/v1/generations/{id}/audio", summary="Download a generation's audio (Range and HEAD supported, never charged)",
    responses={"200": {"description": "The audio file", **_AUDIO},
               "206": {"description": "The requested byte range", **_AUDIO}},
)
async def download_audio(request: web.Request) -> web.StreamResponse:
    user = await authenticate(request)
    service = _service(request)
    item = await service.get(user.id, _generation_id(request))
    if item.storage_key is None:
        raise NotFound("This generation has no audio", code="generation_not_found")
    return await _serve(request, item, _file_headers(item))


@api.get(
    "/v1/generations/{id}/audio-link", summary="Where to download a generation's audio: a presigned bucket URL "
    "when the server stores audio in S3 (PRESIGN_TTL seconds), else the download URL", response=AudioLink,
)
async def audio_link(request: web.Request) -> web.Response:
    user = await authenticate(request)
    service = _service(request)
    item = await service.get(user.id, _generation_id(request))
    if item.storage_key is None:
        raise NotFound("This generation has no audio", code="generation_not_found")
    ttl = request.app[SETTINGS].presign_ttl
    url = await service.storage.presign(item.storage_key, expires_in=ttl)
    if url is None:
        link = AudioLink(url=f"/v1/generations/{item.id}/audio", direct=False, expires_in=None)
    else:
        link = AudioLink(url=url, direct=True, expires_in=ttl)
    return json_response(link, headers={"Cache-Control": "no-store"})


@api.delete("/v1/generations/{id}", summary="Delete one of your generations and its audio", status=204)
async def delete_generation(request: web.Request) -> web.Response:
    user = await authenticate(request)
    await _service(request).delete(user.id, _generation_id(request))
    return web.Response(status=204)


# --- helpers ---------------------------------------------------------------------------------


def _client_gone(request: web.Request):
    # aiohttp drops the transport when the peer disconnects; servers that do not cancel handlers
    # on disconnect (the default) learn of it only this way.
    return lambda: request.transport is None or request.transport.is_closing()


def _generation_id(request: web.Request) -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info["id"])
    except ValueError:
        # Any string that is not one of your ids is simply not found.
        raise NotFound("No such generation", code="generation_not_found") from None


def _out(item: GenerationResult) -> dict:
    body = GenerationOut(
        id=str(item.id), kind=item.kind, prompt=item.prompt, text=item.text, variation=item.variation,
        takes=item.takes, take_label=item.take_label,
        duration_seconds=item.duration_seconds, sample_rate=item.sample_rate, credits=item.credits,
        format=item.format, filename=item.filename, download_url=f"/v1/generations/{item.id}/audio",
        cached=item.cached, created_at=item.created_at,
    ).model_dump(mode="json")
    # An SFX has a prompt, a voice-over a text; the other key is left out rather than null.
    body.pop("text" if item.kind == "sfx" else "prompt")
    return body


def _file_headers(item: GenerationResult) -> dict[str, str]:
    return {
        "Content-Type": item.content_type,
        "Content-Disposition": content_disposition(item.filename),
        "X-Generation-Id": str(item.id),
        "X-Audio-Duration": f"{item.duration_seconds or 0:.3f}",
        "Cache-Control": "private, no-store",
    }


def _wants_json(request: web.Request) -> bool:
    return "application/json" in request.headers.get("Accept", "")


async def _created(request: web.Request, outcome: Outcome, *, force_json: bool) -> web.StreamResponse:
    remaining = "unlimited" if outcome.remaining is None else str(outcome.remaining)
    headers = {"X-Credits-Charged": str(outcome.charged), "X-Credits-Remaining": remaining}
    if outcome.replayed:
        headers["Idempotent-Replayed"] = "true"
    if force_json or _wants_json(request) or len(outcome.results) != 1 or outcome.failed:
        body = {
            "generations": [_out(r) for r in outcome.results],
            "credits": {"charged": outcome.charged, "remaining": outcome.remaining},
            "failed": [{"variation": v, "error": e.body()["error"]} for v, e in outcome.failed],
        }
        return json_response(body, headers=headers)
    item = outcome.results[0]
    headers.update(_file_headers(item))
    if item.data is not None:
        return web.Response(body=item.data, headers=headers)
    return await _serve(request, item, headers)


async def _serve(request: web.Request, item: GenerationResult, headers: dict[str, str]) -> web.StreamResponse:
    try:
        return await serve_object(request, _service(request).storage, item.storage_key or "",
                                  content_type=item.content_type, headers=headers)
    except ObjectGone:
        raise NotFound("The audio of this generation is no longer stored", code="audio_gone") from None
