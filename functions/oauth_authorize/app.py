"""Lambda entry point - behaviour arrives with its issue; until then it says so plainly."""

import json


def handler(event: dict, context: object) -> dict:
    return {
        "statusCode": 501,
        "headers": {"content-type": "application/json"},
        "body": json.dumps({"message": "not implemented yet"}),
    }
