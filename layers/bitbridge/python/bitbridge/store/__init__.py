"""Data access: every DynamoDB item shape and key lives here, and nowhere else.

PynamoDB models, one module per table (`accounts`, `ephemeral`, `imports` (and `git_state`, the git data's
pointer, in the same table), `providers`, `subscriptions`), find their table name and region through
`bitbridge.config` when first used (not at import), so the same classes serve Lambda, the local stack and
tests on moto. The webhook path uses the low-level client instead, for its cold start: `deliveries` (the
outbox items) and `webhook_state` (what the publisher updates on providers, subscriptions and projects).
"""
