"""Business figures (MRR, churn, revenue, upstream cost, gross margin) read from our own tables.

Nothing to wire: `server.business.service.report` is called by the admin pages.
"""
