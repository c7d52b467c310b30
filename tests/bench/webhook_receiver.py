"""Warm webhook_receiver time per delivery, against a minimal baseline handler in the same run.

Both run on moto in-process (mock_aws) with the template's tables, on the same realistic signed
Bitbucket Cloud push payload, each delivery with a new id:

- baseline: HMAC-SHA256 verify with a known secret + one conditional ``put_item`` (low-level client);
- webhook_receiver: the real handler (v2 event parsing, derived secret, checks, JSON, conditional put,
  structured log line).

Rounds are interleaved so machine noise hits both alike. Target: ratio <= 1.5. Prints, never fails.

    .venv/bin/python tests/bench/webhook_receiver.py [--deliveries 500] [--rounds 5]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import statistics
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "POWERTOOLS_SERVICE_NAME": "bitbridge",
    }
)
os.environ.pop("AWS_ENDPOINT_URL", None)

TARGET = 1.5
PAYLOAD = REPO_ROOT.parent / "shared" / "bitbucket" / "webhooks" / "cloud" / "repo-push.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deliveries", type=int, default=300, help="deliveries per handler per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    import boto3
    from moto import mock_aws

    with mock_aws():
        from bitbridge.aws import client, reset_caches
        from infra.local.resources import create_resources

        resources = create_resources(lambda service: boto3.client(service, region_name="us-east-1"))
        os.environ.update(resources.environment)
        reset_caches()

        from functions.webhook_receiver.app import handler
        from tests.integration.webhooks.support import Context, api_event, bitbucket_headers, hook_secret

        body = PAYLOAD.read_bytes()
        secret = hook_secret(resources.environment, "bench-sub")
        table = resources.environment["BITBRIDGE_DELIVERIES_TABLE"]
        ddb = client("dynamodb")
        context = Context()

        def baseline(event: dict, _: object) -> dict:
            """The least a receiver can do: verify the HMAC and store the body once."""
            raw = event["body"].encode("utf-8")
            expected = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(expected, event["headers"]["x-hub-signature"]):
                return {"statusCode": 401}
            ddb.put_item(
                TableName=table,
                Item={"pk": {"S": "base#" + event["headers"]["x-request-uuid"]}, "body": {"S": event["body"]}},
                ConditionExpression="attribute_not_exists(pk)",
            )
            return {"statusCode": 202}

        def events(prefix: str, n: int) -> list[dict]:
            return [
                api_event(
                    "bitbucket-cloud",
                    "bench-sub",
                    body,
                    bitbucket_headers("cloud", "repo:push", body, secret, delivery_id=f"{prefix}-{i}"),
                )
                for i in range(n)
            ]

        def timed(fn, batch: list[dict]) -> float:
            started = time.perf_counter()
            for event in batch:
                assert fn(event, context)["statusCode"] == 202
            return (time.perf_counter() - started) / len(batch)

        # The receiver logs one JSON line per delivery to stdout, as on Lambda; keep it off the terminal.
        saved_stdout = os.dup(1)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        try:
            timed(baseline, events("warm-b", 30))  # warm: clients, secret cache, bytecode
            timed(handler, events("warm-h", 30))
            base_s, ours_s = [], []
            for r in range(args.rounds):
                base_s.append(timed(baseline, events(f"b{r}", args.deliveries)))
                ours_s.append(timed(handler, events(f"h{r}", args.deliveries)))
        finally:
            sys.stdout.flush()
            os.dup2(saved_stdout, 1)
            os.close(devnull)

    base, ours = statistics.median(base_s), statistics.median(ours_s)
    ratio = ours / base
    print(f"webhook_receiver warm: {args.deliveries} deliveries x {args.rounds} rounds, moto in-process, {len(body)} B")
    print(f"{'handler':<34} {'ms/delivery':>12} {'deliveries/s':>13}")
    print(f"{'baseline (HMAC + one put_item)':<34} {base * 1000:>12.3f} {1 / base:>13.0f}")
    print(f"{'webhook_receiver':<34} {ours * 1000:>12.3f} {1 / ours:>13.0f}")
    print(f"ratio {ratio:.2f} (target <= {TARGET}): {'ok' if ratio <= TARGET else 'OVER TARGET'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
