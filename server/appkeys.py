"""Typed keys for the objects every domain shares through the application."""

from __future__ import annotations

from typing import TYPE_CHECKING

import aiohttp
import asyncpg
import redis.asyncio as aioredis
from aiohttp import web

from server.settings import Settings

if TYPE_CHECKING:
    from server.web.api import Endpoint
    from server.web.metrics import Metrics

SETTINGS = web.AppKey("settings", Settings)
DB = web.AppKey("db", asyncpg.Pool)
REDIS = web.AppKey("redis", aioredis.Redis)
HTTP = web.AppKey("http", aiohttp.ClientSession)
METRICS = web.AppKey("metrics", "Metrics")
ENDPOINTS = web.AppKey("endpoints", list)
# The auth domain's `authenticate(request)`: declared routes with auth=True call it before reading
# the body, so an anonymous caller learns nothing from validation errors.
AUTHENTICATE = web.AppKey("authenticate", object)  # list[Endpoint], the /v1 routes with their schemas
# The releases domain's view of the oldest supported panel per product (`min_supported(product)`,
# `download_url(product)`), read by the panel_version middleware from memory.
PANEL_FLOOR = web.AppKey("panel_floor", object)

# Per-request values.
REQUEST_ID = web.RequestKey("request_id", str)
