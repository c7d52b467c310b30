"""The service API's core: what a product's backend may do for its end users through `/service/v1/...`.

credentials (clients, hashed keys, scopes), links (end users and connect sessions), tokens, proxy
(path safety, retries, forwarding), audit. The Lambda handler in functions/service_api is a thin edge.
"""
