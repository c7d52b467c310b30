"""Who a token belongs to, keyed by Bitbucket's stable ids (never usernames).

Each flavor answers `identify` its own way (`cloud.Cloud.identify`, `datacenter.DataCenter.identify`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Identity:
    external_id: str  # Cloud account uuid, Data Center numeric user id
    username: str | None
    display_name: str | None
    email: str | None
