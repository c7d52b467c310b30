"""Talking to Bitbucket Cloud and Data Center over HTTP (requests), with one error vocabulary.

`api.for_flavor(flavor)` gives the one interface (`api.Bitbucket`) both flavors implement, in
`cloud.py` and `datacenter.py`: OAuth endpoints and quirks, identity, repository listing and paging,
refs, pull requests, issues and hooks. Code outside this package never branches on a flavor; the
flavor names themselves are defined here, once (this module imports nothing, so any path may use them).
"""

CLOUD = "cloud"
DATACENTER = "datacenter"
FLAVORS = (CLOUD, DATACENTER)
