"""Which repository a subscription (and so a hook secret) stands for.

A subscription id is derived from the provider id and the repository id, and a hook's secret from the
subscription id: so a delivery proves its provider and repository by its path and signature alone. The
publisher recomputes the id from the provider in the URL and the repository in the payload; a delivery
whose ids do not give back its subscription id was signed for another repository (or posted under
another provider's path) and is refused - no database read needed. Standard library only (cold path).
"""

from __future__ import annotations

import hashlib
import hmac


def subscription_id(provider_id: str, repository_id: str) -> str:
    digest = hashlib.sha256(f"{provider_id}\0{repository_id}".encode()).hexdigest()
    return f"sub-{digest[:24]}"


def belongs_to(subscription: str, provider_id: str, repository_id: str) -> bool:
    """Whether the provider and repository named by a delivery are its subscription's."""
    return hmac.compare_digest(subscription_id(provider_id, repository_id), subscription)
