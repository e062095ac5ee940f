"""discovery.iter_candidates on real folder trees in tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from iqs_daemon.discovery import (
    SUPPORTED_EXTENSIONS,
    SYMLINK_SKIPPED,
    is_temporary_name,
    iter_candidates,
)
from iqs_daemon.records import Candidate


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def walk(*paths: Path, follow_symlinks: bool = False) -> tuple[list[Path], list[tuple[Path, str]]]:
    skipped: list[tuple[Path, str]] = []
    found = iter_candidates(
        paths, follow_symlinks=follow_symlinks, on_skip=lambda p, r: skipped.append((p, r))
    )
    return [c.path for c in found], skipped


def test_nested_folders_in_sorted_order(tmp_path: Path) -> None:
    for name in ["b/2.jpg", "a/z/1.png", "a/0.heic", "c.nef", "a/y.tif", "b/1.jpg"]:
        touch(tmp_path / name)
    paths, skipped = walk(tmp_path)
    relative = [p.relative_to(tmp_path).as_posix() for p in paths]
    assert relative == ["a/0.heic", "a/y.tif", "a/z/1.png", "b/1.jpg", "b/2.jpg", "c.nef"]
    assert skipped == []


def test_candidate_carries_size_and_mtime(tmp_path: Path) -> None:
    photo = touch(tmp_path / "p.jpg", b"12345")
    os.utime(photo, ns=(1_000_000_000, 1_600_000_000_123_456_789))
    assert list(iter_candidates([tmp_path])) == [
        Candidate(photo, 5, 1_600_000_000_123_456_789)
    ]


def test_non_images_are_skipped_quietly(tmp_path: Path) -> None:
    for name in ["notes.txt", "movie.mp4", "p.jpg.xmp", "p.xmp", "README", "p.jpg"]:
        touch(tmp_path / name)
    paths, skipped = walk(tmp_path)
    assert paths == [tmp_path / "p.jpg"]
    assert skipped == []


def test_extensions_are_case_insensitive(tmp_path: Path) -> None:
    for name in ["a.JPG", "b.Jpeg", "c.CR3", "d.HEIC", "e.DnG", "f.txt"]:
        touch(tmp_path / name)
    paths, _ = walk(tmp_path)
    assert [p.name for p in paths] == ["a.JPG", "b.Jpeg", "c.CR3", "d.HEIC", "e.DnG"]


def test_supported_extensions_are_lower_case_suffixes() -> None:
    assert all(ext.startswith(".") and ext == ext.lower() for ext in SUPPORTED_EXTENSIONS)
    assert {".jpg", ".png", ".tif", ".webp", ".heic", ".hif", ".avif", ".cr3", ".nef"} <= (
        SUPPORTED_EXTENSIONS
    )
    assert ".xmp" not in SUPPORTED_EXTENSIONS


@pytest.mark.parametrize(
    "name",
    [".hidden.jpg", ".IMG_1.jpg.Xy12Ab", "a.jpg.part", "a.jpg.tmp", "a.jpg.crdownload",
     "a.jpg.partial", "a.jpg.!sync", "a.jpg.iqs-tmp", "a.JPG.PART", "a.jpg.xmp", "a.xmp"],
)  # fmt: skip
def test_temporary_names(name: str) -> None:
    assert is_temporary_name(name)


@pytest.mark.parametrize("name", ["a.jpg", "IMG_0001.CR3", "party.2024.jpg", "tmp.jpg", "x.partx"])
def test_ordinary_names_are_not_temporary(name: str) -> None:
    assert not is_temporary_name(name)


def test_temporary_files_and_hidden_folders_are_not_candidates(tmp_path: Path) -> None:
    for name in [".a.jpg.Ab12Cd", "b.jpg.part", "c.jpg.iqs-tmp", ".thumbnails/t.jpg",
                 "@eaDir/d.jpg/SYNOPHOTO_THUMB_XL.jpg", "ok.jpg"]:  # fmt: skip
        touch(tmp_path / name)
    paths, skipped = walk(tmp_path)
    assert paths == [tmp_path / "ok.jpg"]
    assert skipped == []


def test_explicit_files_and_folders_mix(tmp_path: Path) -> None:
    single = touch(tmp_path / "one" / "single.png")
    touch(tmp_path / "two" / "x.jpg")
    paths, skipped = walk(single, tmp_path / "two", single)
    assert paths == [single, tmp_path / "two" / "x.jpg"]
    assert skipped == []


def test_missing_path_is_reported(tmp_path: Path) -> None:
    touch(tmp_path / "a.jpg")
    paths, skipped = walk(tmp_path / "nope", tmp_path)
    assert paths == [tmp_path / "a.jpg"]
    assert skipped == [(tmp_path / "nope", "no such file or directory")]


def test_explicit_non_photo_file_is_reported(tmp_path: Path) -> None:
    notes = touch(tmp_path / "notes.txt")
    assert walk(notes) == ([], [(notes, "not a supported photo (.txt)")])


def test_symlinks_are_not_followed_by_default(tmp_path: Path) -> None:
    library = tmp_path / "library"
    elsewhere = tmp_path / "elsewhere"
    touch(library / "real.jpg")
    touch(elsewhere / "other.jpg")
    (library / "link.jpg").symlink_to(elsewhere / "other.jpg")
    (library / "linkdir").symlink_to(elsewhere, target_is_directory=True)
    (library / "notes.txt").symlink_to(tmp_path / "missing.txt")  # not a photo: quiet
    paths, skipped = walk(library)
    assert paths == [library / "real.jpg"]
    assert skipped == [
        (library / "link.jpg", SYMLINK_SKIPPED),
        (library / "linkdir", SYMLINK_SKIPPED),
    ]


def test_symlinks_are_followed_when_asked(tmp_path: Path) -> None:
    library = tmp_path / "library"
    elsewhere = tmp_path / "elsewhere"
    touch(library / "real.jpg")
    touch(elsewhere / "other.jpg")
    (library / "link.jpg").symlink_to(elsewhere / "other.jpg")
    (library / "linkdir").symlink_to(elsewhere, target_is_directory=True)
    (library / "broken.jpg").symlink_to(tmp_path / "gone.jpg")
    paths, skipped = walk(library, follow_symlinks=True)
    # link.jpg and linkdir/other.jpg are one file: it is listed once, by the first name met
    assert paths == [library / "link.jpg", library / "real.jpg"]
    assert skipped == [(library / "broken.jpg", "broken symbolic link")]


def test_symlink_loops_end(tmp_path: Path) -> None:
    touch(tmp_path / "a" / "p.jpg")
    (tmp_path / "a" / "loop").symlink_to(tmp_path / "a", target_is_directory=True)
    (tmp_path / "a" / "up").symlink_to(tmp_path, target_is_directory=True)
    paths, skipped = walk(tmp_path, follow_symlinks=True)
    assert paths == [tmp_path / "a" / "p.jpg"]
    assert skipped == []


def test_explicit_symlinked_root_is_followed(tmp_path: Path) -> None:
    touch(tmp_path / "real" / "p.jpg")
    (tmp_path / "pictures").symlink_to(tmp_path / "real", target_is_directory=True)
    paths, skipped = walk(tmp_path / "pictures")
    assert paths == [tmp_path / "pictures" / "p.jpg"]
    assert skipped == []


def test_overlapping_roots_list_each_folder_once(tmp_path: Path) -> None:
    touch(tmp_path / "sub" / "p.jpg")
    paths, _ = walk(tmp_path, tmp_path / "sub")
    assert paths == [tmp_path / "sub" / "p.jpg"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads folders whatever their permissions")
def test_unreadable_folder_is_reported_and_the_walk_goes_on(tmp_path: Path) -> None:
    touch(tmp_path / "a" / "p.jpg")
    locked = tmp_path / "b"
    touch(locked / "q.jpg")
    touch(tmp_path / "c" / "r.jpg")
    locked.chmod(0)
    try:
        paths, skipped = walk(tmp_path)
    finally:
        locked.chmod(0o755)
    assert paths == [tmp_path / "a" / "p.jpg", tmp_path / "c" / "r.jpg"]
    assert skipped == [(locked, "permission denied")]


def test_fifo_is_not_a_photo(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    assert walk(tmp_path) == ([], [])
    assert walk(fifo) == ([], [(fifo, "not a regular file or folder")])


def test_deep_tree_does_not_recurse(tmp_path: Path) -> None:
    deep = tmp_path
    for _ in range(120):
        deep = deep / "d"
    touch(deep / "p.jpg")
    assert walk(tmp_path)[0] == [deep / "p.jpg"]


def test_it_is_lazy(tmp_path: Path) -> None:
    for i in range(5):
        touch(tmp_path / f"{i}.jpg")
    iterator = iter_candidates([tmp_path])
    assert next(iterator).path.name == "0.jpg"
