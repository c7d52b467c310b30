"""The ready files the local stack writes are polled by tests and the CLI: a reader never sees half of one."""

from __future__ import annotations

import json
import threading

from infra.local.__main__ import _write_whole


def test_a_reader_polling_the_ready_file_sees_none_of_it_or_all_of_it(tmp_path):
    # Found under load: a test read the ready file between open("w") and the write, got "", and failed.
    path = tmp_path / "ready.json"
    urls = {f"service{i}": f"http://127.0.0.1:{40000 + i}" for i in range(2000)}
    done = threading.Event()
    seen: list[str] = []

    def write() -> None:
        for _ in range(200):
            _write_whole(path, urls)
        done.set()

    writer = threading.Thread(target=write)
    writer.start()
    while not done.is_set():
        if path.exists():
            seen.append(path.read_text())
    writer.join()
    assert seen, "the reader never caught the file"
    assert all(json.loads(text) == urls for text in seen)
    assert [p.name for p in tmp_path.iterdir()] == ["ready.json"]  # no temporary file left behind
