"""HTTP for prompt assistance: sound prompt ideas, spotting from markers, voice-over script help."""

from __future__ import annotations

from aiohttp import web

from server.assist.models import (
    MAX_MARKERS,
    AssistHistory,
    AssistHistoryItem,
    AssistHistoryQuery,
    SfxPromptRequest,
    SfxPromptResponse,
    SfxPromptsReply,
    SpotReply,
    SpotRequest,
    SpotResponse,
    VoiceScriptReply,
    VoiceScriptRequest,
    VoiceScriptResponse,
)
from server.assist.rules import clamp_cues, count_words, fits, spoken_seconds
from server.assist import ASSIST
from server.assist.service import AssistService
from server.auth.service import authenticate, require_verified_email
from server.web.api import ApiRoutes, json_response
from server.web.errors import ValidationFailed

api = ApiRoutes("assist")
_IDEMPOTENCY = "Idempotency-Key"


def _service(request: web.Request) -> AssistService:
    return request.app[ASSIST]


@api.post(
    "/v1/assist/sfx-prompt", body=SfxPromptRequest, response=SfxPromptResponse,
    summary="Three rich sound-effect prompts from a short idea (charged by tokens; send an Idempotency-Key header)",
)
async def sfx_prompt(request: web.Request, body: SfxPromptRequest) -> web.Response:
    user = await require_verified_email(request)  # answers cost credits
    service = _service(request)
    plan = await service.plan_allowing(user.id, "sfx_prompt")
    answer = await service.answer(user.id, plan, "sfx_prompt", body.model_dump(exclude_none=True), SfxPromptsReply,
                                  request.headers.get(_IDEMPOTENCY), client_gone=_client_gone(request))
    return json_response({"id": str(answer.id), "prompts": answer.reply["prompts"], "usage": answer.usage()})


@api.post(
    "/v1/assist/spot", body=SpotRequest, response=SpotResponse,
    summary="Sound cues for a sequence from its markers and transcript, clamped to the sequence "
            "(charged by tokens; send an Idempotency-Key header)",
)
async def spot(request: web.Request, body: SpotRequest) -> web.Response:
    user = await require_verified_email(request)  # answers cost credits
    service = _service(request)
    plan = await service.plan_allowing(user.id, "spot")
    answer = await service.answer(user.id, plan, "spot", body.model_dump(exclude_none=True), SpotReply,
                                  request.headers.get(_IDEMPOTENCY), client_gone=_client_gone(request))
    # The model's times are proposals: every cue is placed inside the sequence here.
    cues, dropped = clamp_cues(SpotReply.model_validate(answer.reply).cues, sequence_duration=body.sequence_duration,
                               limit=min(2 * len(body.markers), 2 * MAX_MARKERS))
    return json_response({"id": str(answer.id), "cues": [c.model_dump() for c in cues], "dropped": dropped,
                          "usage": answer.usage()})


@api.post(
    "/v1/assist/voice-script", body=VoiceScriptRequest, response=VoiceScriptResponse,
    summary="A voice-over script tidied for reading aloud, with its spoken length for the voice "
            "(charged by tokens; send an Idempotency-Key header)",
)
async def voice_script(request: web.Request, body: VoiceScriptRequest) -> web.Response:
    user = await require_verified_email(request)  # answers cost credits
    service = _service(request)
    plan = await service.plan_allowing(user.id, "voice_script")
    if len(body.script) > plan.features.max_voice_chars:
        raise ValidationFailed("The script is longer than your plan allows per voice-over", details={
            "fields": [{"field": "script", "location": "body", "type": "plan_limit", "limit": plan.features.max_voice_chars,
                        "message": f"The {plan.name} plan allows up to {plan.features.max_voice_chars} characters"}],
            "plan": plan.code, "upgrade_url": request.app[ASSIST].settings.upgrade_url,
        })
    if body.voice_id is not None and service.voice_check is not None:
        await service.voice_check(body.voice_id)
    answer = await service.answer(user.id, plan, "voice_script", body.model_dump(exclude_none=True), VoiceScriptReply,
                                  request.headers.get(_IDEMPOTENCY), client_gone=_client_gone(request))
    script = answer.reply["script"]
    estimate = spoken_seconds(script, speed=body.speed)
    return json_response({
        "id": str(answer.id), "script": script, "notes": answer.reply["notes"], "words": count_words(script),
        "estimated_seconds": estimate, "target_seconds": body.target_seconds, "fits": fits(estimate, body.target_seconds),
        "voice_id": body.voice_id, "usage": answer.usage(),
    })


@api.get("/v1/assist/history", query=AssistHistoryQuery, response=AssistHistory,
         summary="Your assist requests, newest first, with tokens and credits; this month's totals")
async def history(request: web.Request, query: AssistHistoryQuery) -> web.Response:
    user = await authenticate(request)
    rows, totals = await _service(request).history(user.id, query.limit)
    items = [AssistHistoryItem.model_validate({**dict(r), "id": str(r["id"])}, from_attributes=False) for r in rows]
    return json_response({"items": [i.model_dump(mode="json") for i in items], "tokens_this_month": totals["tokens"],
                          "credits_this_month": totals["credits"]}, headers={"Cache-Control": "no-store"})


def _client_gone(request: web.Request):
    return lambda: request.transport is None or request.transport.is_closing()
