"""Reconciliation: compare subscribed repositories with Bitbucket, repair hooks, backfill missed changes.

`diff` (pure: observed state vs Bitbucket -> missed changes), `events` (the events for them, schema 1.2),
`emit` (through the deliveries outbox, once per event id), `run` (hooks, budget, health, metrics).
"""
