"""Plans, pricing and the credit ledger.

Other domains use `server.credits.service` (reserve, capture, release, grant_period, adjust,
top_up, set_plan, set_payment_state, summary, plan_for, load_pricing), the pure quotes in
`server.credits.pricing`, and `server.credits.ratelimit.RateLimiter`.
"""

from aiohttp import web


def setup(app: web.Application) -> None:
    from server.credits.handlers import api
    from server.credits.sweep import sweep_ctx

    api.register(app)
    app.cleanup_ctx.append(sweep_ctx)
