"""Data access: PynamoDB models, one module per table, bound to template.yaml's tables.

Models find their table name and region through `bitbridge.config` when first used (not at
import), so the same classes serve Lambda, the local stack and tests on moto.
"""
