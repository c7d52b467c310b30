"""The reconciler's pure parts."""

#: A repository's section in the reconciler's events (what the ledger item keeps), for the tests here.
REPO = {
    "id": "{r}",
    "workspace": "w",
    "slug": "s",
    "full_name": "w/s",
    "name": "s",
    "links": {"html": None, "clone": []},
}
