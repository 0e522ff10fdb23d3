"""Storage backends: one contract, run against the local disk and against an
S3-compatible server (moto, started by the tests); then what is particular to
each (layout, atomic writes, configuration)."""

from __future__ import annotations

import hashlib

import pytest

from files.storage import (
    BlobMissing,
    LocalDiskStorage,
    S3Storage,
    build_storage,
    files_dir,
    s3_client,
)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(params=["local", "s3"])
def backend(request, tmp_path):
    if request.param == "local":
        return build_storage({"FILES_STORAGE": "local", "FILES_DIR": str(tmp_path / "blobs")})
    return build_storage(request.getfixturevalue("s3_config"))


# --- the contract, on both backends ------------------------------------------------


def test_put_then_get_and_exists(backend):
    key = sha(b"bonjour")
    assert not backend.exists(key)
    backend.put(key, b"bonjour")
    assert backend.exists(key)
    assert backend.get(key) == b"bonjour"


def test_putting_the_same_content_twice_keeps_one_copy(backend):
    key = sha(b"deux fois")
    backend.put(key, b"deux fois")
    backend.put(key, b"deux fois")
    assert backend.get(key) == b"deux fois"
    backend.delete(key)  # one delete removes it: the storage counts no references
    assert not backend.exists(key)


def test_a_missing_blob_reads_as_blob_missing_and_deleting_it_is_harmless(backend):
    key = sha(b"absent")
    with pytest.raises(BlobMissing):
        backend.get(key)
    backend.delete(key)
    backend.put(key, b"absent")
    backend.delete(key)
    backend.delete(key)
    assert not backend.exists(key)
    with pytest.raises(BlobMissing):
        backend.get(key)


def test_binary_content_comes_back_byte_for_byte(backend):
    data = bytes(range(256)) * 4096  # 1 MiB, every byte value
    backend.put(sha(data), data)
    assert backend.get(sha(data)) == data


def test_other_contents_do_not_interfere(backend):
    backend.put(sha(b"a"), b"a")
    backend.put(sha(b"b"), b"b")
    backend.delete(sha(b"a"))
    assert backend.get(sha(b"b")) == b"b"


def test_content_that_is_not_bytes_is_refused_and_nothing_is_stored(backend):
    key = sha(b"x")
    with pytest.raises(TypeError):
        backend.put(key, "not bytes")
    assert not backend.exists(key)


@pytest.mark.parametrize("key", ["../" + "a" * 61, "A" * 64, "a" * 63, "", None])
def test_keys_that_are_not_a_sha256_are_refused_by_every_backend(backend, key):
    with pytest.raises(ValueError):
        backend.put(key, b"x")
    with pytest.raises(ValueError):
        backend.exists(key)


# --- local disk ------------------------------------------------------------------------


def test_bytes_are_stored_under_two_levels_of_their_hash(tmp_path):
    storage = LocalDiskStorage(tmp_path)
    key = sha(b"bonjour")
    storage.put(key, b"bonjour")
    assert (tmp_path / key[:2] / key[2:4] / key).read_bytes() == b"bonjour"
    assert storage.get(key) == b"bonjour"
    assert storage.exists(key)


def test_a_write_leaves_no_temporary_file_behind(tmp_path):
    storage = LocalDiskStorage(tmp_path)
    key = sha(b"x")
    storage.put(key, b"x")
    storage.put(key, b"x")
    assert [p.name for p in storage.path(key).parent.iterdir()] == [key]


def test_a_failed_write_leaves_neither_the_blob_nor_a_temporary_file(tmp_path):
    storage = LocalDiskStorage(tmp_path)
    key = sha(b"x")
    with pytest.raises(TypeError):
        storage.put(key, "not bytes")
    assert not storage.exists(key)
    assert list(storage.path(key).parent.iterdir()) == []


def test_deleted_bytes_are_missing_and_deleting_twice_is_harmless(tmp_path):
    storage = LocalDiskStorage(tmp_path)
    key = sha(b"x")
    storage.put(key, b"x")
    storage.delete(key)
    storage.delete(key)
    assert not storage.exists(key)
    with pytest.raises(BlobMissing):
        storage.get(key)


def test_the_folder_comes_from_config_then_environment_then_data_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("FILES_DIR", raising=False)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    assert files_dir({}) == tmp_path / "data" / "files"
    monkeypatch.setenv("FILES_DIR", str(tmp_path / "env"))
    assert files_dir({}) == tmp_path / "env"
    assert files_dir({"FILES_DIR": str(tmp_path / "cfg")}) == tmp_path / "cfg"


# --- S3 --------------------------------------------------------------------------------


def test_s3_objects_are_keyed_by_two_levels_of_their_hash(s3_config):
    storage = build_storage(s3_config)
    assert isinstance(storage, S3Storage)
    key = sha(b"bonjour")
    storage.put(key, b"bonjour")
    listed = s3_client(s3_config).list_objects_v2(Bucket=s3_config["S3_BUCKET"])
    assert [o["Key"] for o in listed["Contents"]] == [f"{key[:2]}/{key[2:4]}/{key}"]


def test_s3_does_not_upload_content_it_already_has(s3_config):
    storage = build_storage(s3_config)
    uploads = []
    storage.client.meta.events.register(
        "before-call.s3.PutObject", lambda **kwargs: uploads.append(kwargs)
    )
    storage.put(sha(b"x"), b"x")
    storage.put(sha(b"x"), b"x")
    assert len(uploads) == 1


def test_s3_needs_a_bucket_that_exists(s3_config):
    with pytest.raises(ValueError):
        build_storage(dict(s3_config, S3_BUCKET=""))
    with pytest.raises(Exception) as caught:
        build_storage(dict(s3_config, S3_BUCKET="no-such-bucket-here"))
    assert "404" in str(caught.value) or "NoSuchBucket" in str(caught.value)


def test_an_unknown_backend_is_a_configuration_error(tmp_path):
    with pytest.raises(ValueError):
        build_storage({"FILES_STORAGE": "ftp"})
    default = build_storage({"FILES_DIR": str(tmp_path)})
    assert isinstance(default, LocalDiskStorage) and default.root == tmp_path
