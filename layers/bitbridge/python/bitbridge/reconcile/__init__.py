"""Reconciliation: compare subscribed repositories with Bitbucket, repair hooks, backfill missed changes.

`diff` (pure: the ledger vs Bitbucket -> observations), `events` (the events for them), `emit` (through
the deliveries outbox, once per observation), `run` (hooks, budget, health, metrics). What an import or a
first reconciliation records as observed: `bitbridge.webhooks.baseline` (below both features).
"""
