"""Repository listing and imports: idempotent jobs, a checkpointed worker, snapshots in S3.

listing   GET /api/repos: the session's repositories with stable cursors and their import status
jobs      kickoff (access check, one job per repository, enqueue), queries, cancel, retry
worker    the SQS worker: repository -> branches -> tags -> pull requests -> issues -> webhook -> manifest
output    snapshot objects in S3 (JSON Lines per page, repository.json, manifest.json)
notify    import.started | progress | completed | failed on the event bus
"""
