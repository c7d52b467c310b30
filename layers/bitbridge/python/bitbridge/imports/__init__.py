"""Repository listing and imports: idempotent jobs, a checkpointed worker, snapshots in S3.

listing   GET /api/repos: the session's repositories with stable cursors and their import status
jobs      reading a job, the refusal every import route answers with, opaque cursors
kickoff   a request becomes jobs (access checked first, all or nothing) and their messages
queries   what the API and the command line show of jobs, and to whom
changes   cancel, retry, and the one failure transition
worker    the SQS worker: repository -> branches -> tags -> pull requests -> issues -> webhook -> manifest
output    snapshot objects in S3 (JSON Lines per page, repository.json, manifest.json)
notify    import.started | progress | completed | failed on the event bus
activity  the console's Activity: the newest events of the repositories a user imported
"""
