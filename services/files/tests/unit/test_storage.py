"""The local disk backend: content-addressed layout, atomic writes, safe keys."""

from __future__ import annotations

import hashlib

import pytest

from files.storage import BlobMissing, LocalDiskStorage, files_dir


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


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


@pytest.mark.parametrize("key", ["../" + "a" * 61, "A" * 64, "a" * 63, ""])
def test_keys_that_are_not_a_sha256_are_refused(tmp_path, key):
    with pytest.raises(ValueError):
        LocalDiskStorage(tmp_path).put(key, b"x")


def test_the_folder_comes_from_config_then_environment_then_data_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("FILES_DIR", raising=False)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    assert files_dir({}) == tmp_path / "data" / "files"
    monkeypatch.setenv("FILES_DIR", str(tmp_path / "env"))
    assert files_dir({}) == tmp_path / "env"
    assert files_dir({"FILES_DIR": str(tmp_path / "cfg")}) == tmp_path / "cfg"
