"""Plans, pricing and the credit ledger.

Other domains use `server.credits.service` (reserve, capture, release, grant_period, adjust,
top_up, set_plan, set_payment_state, summary, plan_for, load_pricing), the pure quotes in
`server.credits.pricing`, and `server.credits.ratelimit.RateLimiter`.
"""
