"""Registered Bitbucket providers (a Cloud consumer or a Data Center application link)."""

from __future__ import annotations

from pynamodb.attributes import BooleanAttribute, JSONAttribute, UnicodeAttribute
from pynamodb.models import Model

from bitbridge.store.base import register, table_meta
from bitbridge.timestamps import iso


@register
class ProviderRecord(Model):
    Meta = table_meta("providers_table")

    pk = UnicodeAttribute(hash_key=True)  # the provider id used in URLs, e.g. "bitbucket-cloud"
    flavor = UnicodeAttribute()  # one of bitbridge.bitbucket.FLAVORS
    label = UnicodeAttribute()
    web_url = UnicodeAttribute()  # Cloud: https://bitbucket.org; DC: base URL incl. context path
    api_url = UnicodeAttribute()  # Cloud: https://api.bitbucket.org/2.0; DC: {base}/rest/api/1.0
    scopes = UnicodeAttribute(default="")  # space-separated, as OAuth writes them
    sign_in = BooleanAttribute(default=True)
    # The authorization server's metadata says it puts `iss` in authorization responses (RFC 8414's
    # authorization_response_iss_parameter_supported, RFC 9207): a response without it is then refused.
    sends_iss = BooleanAttribute(default=False)
    imports = BooleanAttribute(default=True)
    status = UnicodeAttribute(default="pending")  # pending | verified | failed
    status_detail = UnicodeAttribute(null=True)
    verified_at = UnicodeAttribute(null=True)
    # The SSH public key imports add read-only to each repository (`bitbridge providers set-deploy-key`),
    # as one OpenSSH line, and the label it carries in Bitbucket.
    deploy_key = UnicodeAttribute(null=True)
    deploy_key_label = UnicodeAttribute(null=True)
    # The admin's rate-limit settings over the flavor's published limits (bitbridge.bitbucket.limits.apply):
    # {"window_seconds", "classes": {name: n}, "refill_per_second", "scope", "reserve", "enabled"}; None: defaults.
    rate_limits = JSONAttribute(null=True)
    created_at = UnicodeAttribute(default=iso)
    updated_at = UnicodeAttribute(default=iso)

    @property
    def provider_id(self) -> str:
        return str(self.pk)

    @property
    def scope_list(self) -> list[str]:
        return self.scopes.split()
