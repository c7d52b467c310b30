"""The proxy the local stack's functions reach AWS through answers as moto (and AWS) would when no fault is set."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from infra.local.faults import FaultProxy
from infra.local.gateway import serve


@pytest.fixture
def through_the_proxy() -> Iterator[tuple[Any, Any]]:
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    moto.start()
    host, port = moto.get_host_and_port()
    server = serve(FaultProxy(f"http://{host}:{port}"), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def s3(url: str) -> Any:
        return boto3.client(
            "s3", region_name="us-east-1", endpoint_url=url, aws_access_key_id="local", aws_secret_access_key="local"
        )

    try:
        yield s3(f"http://{host}:{port}"), s3(f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
        moto.stop()


def test_a_head_answer_keeps_the_objects_size_and_headers(through_the_proxy):
    direct, proxied = through_the_proxy
    direct.create_bucket(Bucket="proxy-check")
    direct.put_object(Bucket="proxy-check", Key="k", Body=b"eleven byte", Metadata={"a": "b"})
    seen = proxied.head_object(Bucket="proxy-check", Key="k")
    assert seen["ContentLength"] == 11 and seen["Metadata"] == {"a": "b"}
    assert proxied.get_object(Bucket="proxy-check", Key="k")["Body"].read() == b"eleven byte"
