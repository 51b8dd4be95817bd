"""The storage layer against a real S3 server (moto) and the local disk: the same calls, the same
answers; the faults of an object store give a retry or one clear line."""

from __future__ import annotations

import pytest
from objectstore import Fault

from entitynet.errors import ConfigError, OutputError, StorageError
from entitynet.storage import STORE, is_remote, local_copy, local_file, staged_dir


def test_is_remote_is_the_one_decision():
    assert is_remote("s3://b/x") and is_remote("gs://b/x") and is_remote("memory://x")
    assert not is_remote("/tmp/x") and not is_remote("relative/x") and not is_remote("file:///tmp/x")


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "out")
    return request.getfixturevalue("bucket") + "/out"


def test_the_same_calls_on_disk_and_in_a_bucket(root):
    assert STORE.read(STORE.join(root, "none.json")) is None
    assert not STORE.exists(STORE.join(root, "none.json"))
    assert STORE.list_names(root) == []
    STORE.write(STORE.join(root, "a.json"), b"{}")
    STORE.write(STORE.join(root, "sub/b.txt"), b"bee")
    assert STORE.read(STORE.join(root, "a.json")) == b"{}"
    assert STORE.list_names(root) == ["a.json"]
    assert STORE.list_names(root, recursive=True) == ["a.json", "sub/b.txt"]
    assert [p.rsplit("/", 1)[-1] for p in STORE.match(STORE.join(root, "*.json"))] == ["a.json"]
    assert STORE.stat(STORE.join(root, "sub/b.txt"))[0] == 3
    with STORE.open(STORE.join(root, "sub/b.txt")) as f:
        assert f.read() == b"bee"
    with local_file(STORE.join(root, "sub/b.txt")) as local:
        assert open(local, "rb").read() == b"bee"
    STORE.delete(STORE.join(root, "a.json"))
    assert STORE.list_names(root, recursive=True) == ["sub/b.txt"]
    with staged_dir(STORE.join(root, "staged")) as d:
        open(f"{d}/c.bin", "wb").write(b"c" * 10)
    assert STORE.read(STORE.join(root, "staged/c.bin")) == b"c" * 10
    STORE.delete_tree(root)
    assert STORE.list_names(root, recursive=True) == []


def test_a_local_copy_is_made_once_and_checked(bucket, object_store_server, tmp_path):
    path = f"{bucket}/shards/s-00000"
    STORE.write(path, b"x" * 1000)
    first = local_copy(path, key="fp1", cache_dir=str(tmp_path))
    gets = len([r for r in object_store_server.requests if r[0] == "GET"])
    assert open(first, "rb").read() == b"x" * 1000
    assert local_copy(path, key="fp1", cache_dir=str(tmp_path)) == first
    assert len([r for r in object_store_server.requests if r[0] == "GET"]) == gets  # no second download
    open(first, "wb").write(b"short")  # a damaged copy is fetched again
    assert open(local_copy(path, key="fp1", cache_dir=str(tmp_path)), "rb").read() == b"x" * 1000
    assert local_copy(path, key="fp2", cache_dir=str(tmp_path)) != first  # other data, other copy


def test_a_503_on_a_write_is_retried(bucket, object_store_server):
    object_store_server.faults.append(Fault("PUT", r"/[^/]+/retried\.json", 503, times=1))
    STORE.write(f"{bucket}/retried.json", b"1")
    assert STORE.read(f"{bucket}/retried.json") == b"1"
    assert [
        r[2] for r in object_store_server.requests if r[0] == "PUT" and r[1].endswith("retried.json")
    ] == [503, 200]


def test_a_write_that_keeps_failing_is_one_line(bucket, object_store_server):
    object_store_server.faults.append(Fault("PUT", r"/[^/]+/failing\.json", 500, times=100))
    with pytest.raises(OutputError, match=r"cannot write s3://.*/failing\.json: .*re-run"):
        STORE.write(f"{bucket}/failing.json", b"1")
    assert STORE.read(f"{bucket}/failing.json") is None  # nothing half-written


def test_a_403_on_a_read_names_the_path_and_the_credentials(bucket, object_store_server):
    STORE.write(f"{bucket}/secret.json", b"1")
    object_store_server.faults.append(Fault("GET", r"/[^/]+/secret\.json", 403, times=100))
    object_store_server.faults.append(Fault("HEAD", r"/[^/]+/secret\.json", 403, times=100))
    with pytest.raises(
        StorageError,
        match=r"cannot (read|look up) s3://.*/secret\.json: access denied; check the credentials",
    ):
        STORE.read(f"{bucket}/secret.json")


def test_an_unknown_scheme_is_one_line():
    with pytest.raises(ConfigError, match=r"nosuch://x/y: no filesystem for nosuch://"):
        STORE.read("nosuch://x/y")
