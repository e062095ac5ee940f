"""Hostile input: the daemon (real watchdog, tiny model, exiv2 process, SQLite) meets every
kind of broken, odd or moving file, stays up, and records what it did with each.

Each case names its expected outcome: ``scored``; ``failed`` with a reason and a retry
(transient) or without one (permanent); ``skipped`` with a reason. Files that were not
scored must be byte-identical afterwards.
"""

from __future__ import annotations

import io
import os
import shutil
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
from daemonkit import all_scored, digest, idle, jpeg, rows, running, settings_for, wait_for
from images import encode, noise_photo, png_chunk, png_declaring
from PIL import Image

from iqs_daemon.config import Settings
from iqs_daemon.metadata import MetadataWriter
from iqs_daemon.records import PickLabel
from iqs_daemon.runner import run_sequential

pillow_heif = pytest.importorskip("pillow_heif")
pillow_heif.register_heif_opener()

XMP_ID = b"http://ns.adobe.com/xap/1.0/\0"


def pil_bytes(image: Image.Image, fmt: str, **kw: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kw)
    return buffer.getvalue()


def app1(payload: bytes, declared: int | None = None) -> bytes:
    length = len(payload) + 2 if declared is None else declared
    return b"\xff\xe1" + struct.pack(">H", length) + payload


def with_segment(jpeg_bytes: bytes, segment: bytes) -> bytes:
    return jpeg_bytes[:2] + segment + jpeg_bytes[2:]


def xmp_packet(body: bytes) -> bytes:
    return (b'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?>'
            b'<x:xmpmeta xmlns:x="adobe:ns:meta/">'
            + body + b'</x:xmpmeta><?xpacket end="w"?>')


def lying_exif() -> bytes:
    """An Exif APP1 whose IFD claims 4,000 entries and points far past the segment."""
    tiff = b"II" + struct.pack("<HI", 42, 8) + struct.pack("<H", 4000)
    tiff += struct.pack("<HHII", 0x010F, 2, 0x7FFFFFF0, 0x7FFFFFF0)  # Make: 2 GB at 2 GB
    tiff += struct.pack("<HHII", 0x8769, 4, 1, 0xFFFFFF00)  # Exif IFD far outside
    return app1(b"Exif\0\0" + tiff)


def bad_library() -> dict[str, tuple[bytes, str]]:
    """name -> (content, expected outcome). Outcomes: scored | retried | permanent."""
    photo = jpeg(150, (96, 64))
    rgb = noise_photo(96, 64, seed=3)
    png = encode(rgb, ".png")
    tif = encode(rgb, ".tiff")
    heic = pil_bytes(Image.fromarray(rgb), "HEIF")
    frames = [Image.fromarray(noise_photo(96, 64, seed=s)) for s in range(3)]
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)])
    deep = b"<rdf:RDF>" + b"<a>" * 20_000 + b"</a>" * 20_000 + b"</rdf:RDF>"
    huge = xmp_packet(b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
                      b'<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/" dc:format="'
                      + b"x" * (30 << 20) + b'"/></rdf:RDF>')
    return {
        "zero.jpg": (b"", "retried"),
        "truncated.jpg": (photo[: len(photo) // 2], "retried"),
        "truncated.png": (png[: len(png) // 2], "retried"),
        "truncated.tif": (tif[: len(tif) // 3], "retried"),
        "truncated.heic": (heic[: len(heic) // 2], "retried"),
        "random.jpg": (np.random.default_rng(1).bytes(5000), "permanent"),
        "png-named.jpg": (png, "scored"),
        # exiv2 refuses to rewrite these blocks: reported, not retried until the file changes.
        "exif-lying-lengths.jpg": (with_segment(photo, lying_exif()), "permanent"),
        "app1-longer-than-file.jpg": (photo[:2] + app1(b"Exif\0\0II*\0", 60_000) + photo[2:],
                                      "retried"),
        "xmp-not-xml.jpg": (with_segment(photo, app1(XMP_ID + b"<x:xmpmeta <<< not xml &&&")),
                            "permanent"),
        "xmp-deeply-nested.jpg": (with_segment(photo, app1(XMP_ID + xmp_packet(deep[:60_000]))),
                                  "permanent"),
        "xmp-30mb.png": (png[:33] + png_chunk(b"iTXt", b"XML:com.adobe.xmp\0\0\0\0\0" + huge)
                         + png[33:], "scored"),
        "bomb.png": (png_declaring(60_000, 60_000), "permanent"),
        "16bit.png": (encode((rgb.astype(np.uint16) * 257), ".png"), "scored"),
        "16bit.tif": (encode((rgb.astype(np.uint16) * 257), ".tiff"), "scored"),
        "cmyk.jpg": (pil_bytes(Image.fromarray(rgb).convert("CMYK"), "JPEG"), "scored"),
        "gray.jpg": (encode(rgb[..., 0], ".jpg"), "scored"),
        "gray.png": (encode(rgb[..., 1], ".png"), "scored"),
        "palette.png": (pil_bytes(Image.fromarray(rgb).convert("P"), "PNG"), "scored"),
        "alpha.png": (encode(rgba, ".png"), "scored"),
        "alpha.webp": (pil_bytes(Image.fromarray(rgba, "RGBA"), "WEBP", lossless=True), "scored"),
        "animated.png": (pil_bytes(frames[0], "PNG", save_all=True, append_images=frames[1:]),
                         "scored"),
        "animated.webp": (pil_bytes(frames[0], "WEBP", save_all=True, append_images=frames[1:]),
                          "scored"),
        "heic-whole.heic": (heic, "scored"),
    }


def outcome(row) -> str:
    if row is None:
        return "no row"
    if row.status == "failed":
        return "retried" if row.next_attempt_at is not None else "permanent"
    return row.status


def test_every_bad_file_is_scored_or_recorded_with_its_reason(tmp_path, tiny_model, env_paths):
    root = tmp_path / "photos"
    root.mkdir()
    library = bad_library()
    odd_names = {
        os.fsdecode(b"caf\xe9-latin1.jpg"): jpeg(60, seed=1),  # not UTF-8
        "x" * 196 + ".jpg": jpeg(70, seed=2),  # 200 bytes
        "é写真 $(touch pwned) `id`; rm -rf ~ | &.jpg": jpeg(80, seed=3),  # shell bait
    }
    # 255 bytes, the longest a name can be: no sidecar name fits beside it. The metadata
    # reader trips over that (ENAMETOOLONG escapes it): it must cost this photo only.
    longest = root / ("y" * 251 + ".jpg")
    longest.write_bytes(jpeg(75, seed=4))
    for name, (data, _) in library.items():
        (root / name).write_bytes(data)
    for name, data in odd_names.items():
        (root / name).write_bytes(data)
    expected = {root / n: want for n, (_, want) in library.items()}
    expected.update({root / n: "scored" for n in odd_names})
    before = {p: digest(p) for p in expected}
    settings = settings_for(env_paths, tiny_model, max_pixels=50_000_000)
    with running(settings, env_paths, [root], retry_base_seconds=3600) as daemon:
        wait_for(lambda: all(daemon.db.get(p) is not None for p in expected) and idle(daemon),
                 timeout=180)
        got = {p: outcome(daemon.db.get(p)) for p in expected}
        assert {p.name: got[p] for p in expected} == {p.name: w for p, w in expected.items()}
        for path, want in expected.items():
            row = daemon.db.get(path)
            if want != "scored":
                assert row.error, path  # a named reason
                assert digest(path) == before[path], f"{path.name} was modified"
        reasons = {p.name: daemon.db.get(p).error for p in expected if expected[p] != "scored"}
        assert reasons["zero.jpg"] == "empty file"
        assert "not an image" in reasons["random.jpg"]
        assert "60000x60000" in reasons["bomb.png"]
        assert "truncated" in reasons["truncated.heic"]
        assert reasons["xmp-not-xml.jpg"].startswith("exiv2: XMP Toolkit error")
        assert reasons["exif-lying-lengths.jpg"].startswith("exiv2:")
        assert daemon.counts["failed"] - (daemon.db.get(longest).status == "failed") == len(
            reasons)
        wait_for(lambda: daemon.db.get(longest) is not None)
        longest_row = daemon.db.get(longest)
        assert longest_row.status == "scored" or "name too long" in longest_row.error
    assert not (tmp_path / "pwned").exists() and not (root / "pwned").exists()
    with MetadataWriter(isolated=False) as reader:
        for path, want in expected.items():
            if want == "scored":
                assert reader.read_stored(path, Settings()).label is not None, path


def test_symlinks_are_skipped_by_default_with_their_reason(tmp_path, tiny_model, env_paths):
    root, outside = tmp_path / "photos", tmp_path / "elsewhere"
    (root / "real").mkdir(parents=True)
    outside.mkdir()
    (root / "real" / "a.jpg").write_bytes(jpeg(120))
    (outside / "b.jpg").write_bytes(jpeg(140))
    links = {
        root / "to-file.jpg": root / "real" / "a.jpg",
        root / "to-outside.jpg": outside / "b.jpg",
        root / "to-folder": outside,
        root / "loop.jpg": root / "loop.jpg",
        root / "broken.jpg": root / "missing.jpg",
    }
    outside_before = digest(outside / "b.jpg")
    for link, target in links.items():  # found by the start's scan
        link.symlink_to(target)
    with running(settings_for(env_paths, tiny_model), env_paths, [root]) as daemon:
        wait_for(lambda: all(daemon.db.get(p) is not None for p in links) and idle(daemon))
        late = root / "late-link.jpg"
        late.symlink_to(root / "real" / "a.jpg")  # made while watched: an event, then triage
        links[late] = root / "real" / "a.jpg"
        wait_for(lambda: daemon.db.get(late) is not None and idle(daemon))
        for link in links:
            row = daemon.db.get(link)
            assert row.status == "skipped" and "symbolic link" in row.error, (link, row)
        assert all_scored(daemon, [root / "real" / "a.jpg"])
        assert daemon.counts["scored"] == 1
        assert daemon.db.totals() == {"skipped": 6, daemon.db.get(root / "real" / "a.jpg").label: 1}
    # A restart's scan says the same, without scoring through a link.
    with running(settings_for(env_paths, tiny_model), env_paths, [root]) as daemon:
        wait_for(lambda: idle(daemon))
        assert daemon.counts["scored"] == 0
        assert {daemon.db.get(p).status for p in links} == {"skipped"}
    assert digest(outside / "b.jpg") == outside_before
    assert not list(outside.glob("*.xmp"))


def test_followed_links_stay_inside_the_roots(tmp_path, tiny_model, env_paths):
    root, outside = tmp_path / "photos", tmp_path / "elsewhere"
    (root / "real").mkdir(parents=True)
    outside.mkdir()
    (root / "real" / "a.jpg").write_bytes(jpeg(120))
    (outside / "b.jpg").write_bytes(jpeg(140))
    (root / "inside.jpg").symlink_to(root / "real" / "a.jpg")
    (root / "outside.jpg").symlink_to(outside / "b.jpg")
    (root / "loop").symlink_to(root)
    before = digest(outside / "b.jpg")
    settings = settings_for(env_paths, tiny_model, follow_symlinks=True)
    with running(settings, env_paths, [root]) as daemon:
        wait_for(lambda: daemon.db.get(root / "outside.jpg") is not None
                 and all_scored(daemon, [root / "real" / "a.jpg"]) and idle(daemon))
        row = daemon.db.get(root / "outside.jpg")
        assert row.status == "skipped" and row.error == "leads outside the watched folders"
        assert daemon.counts["scored"] == 1  # a.jpg once, though it is reachable twice
    assert digest(outside / "b.jpg") == before


def test_read_only_file_gets_a_sidecar_read_only_folder_is_reported(tmp_path, tiny_model,
                                                                    env_paths):
    root = tmp_path / "photos"
    (root / "locked").mkdir(parents=True)
    ro_file, in_ro_folder = root / "ro.jpg", root / "locked" / "p.jpg"
    ro_file.write_bytes(jpeg(200))
    in_ro_folder.write_bytes(jpeg(20))
    ro_file.chmod(0o444)
    (root / "locked").chmod(0o555)
    before = {p: digest(p) for p in (ro_file, in_ro_folder)}
    try:
        with running(settings_for(env_paths, tiny_model), env_paths, [root],
                     retry_base_seconds=0.5) as daemon:
            wait_for(lambda: all_scored(daemon, [ro_file])
                     and daemon.db.get(in_ro_folder) is not None)
            assert Path(f"{ro_file}.xmp").is_file()
            failed = daemon.db.get(in_ro_folder)
            assert failed.status == "failed" and "read-only" in failed.error
            assert failed.next_attempt_at is not None  # the user may fix it: retried
            assert {p: digest(p) for p in before} == before
            (root / "locked").chmod(0o755)  # fixed: the retry writes the verdict
            wait_for(lambda: all_scored(daemon, [in_ro_folder]), timeout=60)
    finally:
        (root / "locked").chmod(0o755)


def test_deleted_or_replaced_between_event_and_processing(tmp_path, tiny_model, env_paths):
    from iqs_daemon.state import FileStat
    from iqs_daemon.watching import Change

    root = tmp_path / "photos"
    root.mkdir()
    with running(settings_for(env_paths, tiny_model, backlog=False), env_paths, [root]) as daemon:
        worker = daemon.worker
        # Deleted after the event: no row, nothing written anywhere.
        gone = root / "gone.jpg"
        assert worker.triage(Change(gone)) is None and daemon.db.get(gone) is None
        # Deleted after triage, before the decode.
        vanishing = root / ".v.jpg"
        vanishing.write_bytes(jpeg(90))
        candidate = worker.triage(Change(vanishing.rename(root / "vanishing.jpg")))
        (root / "vanishing.jpg").unlink()
        worker.score([candidate], daemon._stopping)
        assert daemon.db.get(root / "vanishing.jpg") is None
        # Replaced between the decode and the XMP write: the new file is not written with
        # the old file's verdict, and is looked at again.
        photo = root / ".r.jpg"
        photo.write_bytes(jpeg(30))
        photo = photo.rename(root / "replaced.jpg")
        candidate = worker.triage(Change(photo))
        *up_to_the_write, write = worker.scorer.stages()
        (scored,) = run_sequential(up_to_the_write, [candidate])
        replacement = jpeg(230, (80, 60))
        tmp = root / ".replacement.jpg"
        tmp.write_bytes(replacement)
        os.replace(tmp, photo)
        result = write.run(scored)
        assert result.status == "failed" and "changed while" in result.error.reason
        assert photo.read_bytes() == replacement  # nothing written into it
        worker.record(result)
        assert daemon.db.get(photo) is None
        # The daemon looks again and scores what is there now. Its observer also saw the
        # dark original arrive and may have scored it first: wait for the row that
        # describes the file on disk now.
        wait_for(lambda: all_scored(daemon, [photo]) and idle(daemon)
                 and daemon.db.get(photo).stat == FileStat.of(photo))
        row = daemon.db.get(photo)
        # the bright replacement
        assert row.label == "Accepted", (row, FileStat.of(photo), rows(daemon))


def test_folders_renamed_or_deleted_while_watched(tmp_path, tiny_model, env_paths):
    root = tmp_path / "photos"
    (root / "trip").mkdir(parents=True)
    photos = [root / "trip" / f"{i}.jpg" for i in range(4)]
    for i, p in enumerate(photos):
        p.write_bytes(jpeg(40 * i, seed=i))
    with running(settings_for(env_paths, tiny_model), env_paths, [root]) as daemon:
        wait_for(lambda: all_scored(daemon, photos) and idle(daemon))
        os.rename(root / "trip", root / "trip-2026")
        renamed = [root / "trip-2026" / p.name for p in photos]
        wait_for(lambda: all_scored(daemon, renamed) and idle(daemon))
        assert daemon.counts["scored"] == 4 and daemon.counts["moved"] == 4
        shutil.rmtree(root / "trip-2026")
        wait_for(lambda: {daemon.db.get(p).status for p in renamed} == {"gone"} and idle(daemon))
        assert daemon.db.totals() == {}
        (root / "new.jpg").write_bytes(jpeg(10))
        wait_for(lambda: all_scored(daemon, [root / "new.jpg"]))  # still watching


def test_a_watched_root_that_disappears_and_comes_back(tmp_path, tiny_model, env_paths):
    card = tmp_path / "card"
    card.mkdir()
    old = card / "old.jpg"
    old.write_bytes(jpeg(100))
    with running(settings_for(env_paths, tiny_model), env_paths, [card]) as daemon:
        wait_for(lambda: all_scored(daemon, [old]) and idle(daemon))
        away = tmp_path / "card-away"
        os.rename(card, away)  # unmounted
        wait_for(lambda: daemon.watches.backends[str(card)] == "absent")
        (away / "new.jpg").write_bytes(jpeg(220))
        os.rename(away, card)  # back, with a new photo
        wait_for(lambda: daemon.watches.backends[str(card)] == "inotify")
        wait_for(lambda: all_scored(daemon, [card / "new.jpg"]) and idle(daemon))
        assert daemon.db.get(old).status == "scored" and daemon.db.get(old).scored_count == 1
        # Deleted and made again: the new folder is watched, not the dead one.
        shutil.rmtree(card)
        card.mkdir()
        (card / "again.jpg").write_bytes(jpeg(180))
        wait_for(lambda: all_scored(daemon, [card / "again.jpg"]) and idle(daemon), timeout=60)
        (card / "later.jpg").write_bytes(jpeg(160))
        wait_for(lambda: all_scored(daemon, [card / "later.jpg"]))


def test_a_root_absent_at_start_is_waited_for(tmp_path, tiny_model, env_paths):
    card = tmp_path / "card"
    with running(settings_for(env_paths, tiny_model), env_paths, [card]) as daemon:
        assert daemon.watches.backends == {str(card): "absent"}
        card.mkdir()
        (card / "a.jpg").write_bytes(jpeg(50))
        wait_for(lambda: all_scored(daemon, [card / "a.jpg"]) and idle(daemon))
    assert digest(card / "a.jpg")


def test_label_of_a_png_named_jpg_reads_back(tmp_path, tiny_model, env_paths):
    root = tmp_path / "photos"
    root.mkdir()
    photo = root / "white.jpg"
    photo.write_bytes(encode(np.full((64, 96, 3), 250, np.uint8), ".png"))
    with running(settings_for(env_paths, tiny_model), env_paths, [root]) as daemon:
        wait_for(lambda: all_scored(daemon, [photo]) and idle(daemon))
    with MetadataWriter(isolated=False) as reader:
        assert reader.read_stored(photo, Settings()).label == PickLabel.ACCEPTED
    assert photo.read_bytes().startswith(b"\x89PNG")  # still a PNG inside
    assert cv2.imread(str(photo)) is not None
