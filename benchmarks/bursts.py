"""Bursts benchmark: make bursts from any folder of photos, run the product, measure.

    python benchmarks/bursts.py [SOURCE_FOLDER] [--work DIR] [--seed N] [--repeat N]

Protocol (issue 14), per source photo, with a seeded random generator:

* a burst of 3-8 frames: one frame is the untouched original (its file copied byte for
  byte); every other frame is the photo moved a little (shift up to 2 % of the width,
  crop up to 3 %, rotation up to 1 degree, Lanczos resampling) and then mildly damaged by
  one of: motion blur of 1-4 px at 2 MP (scaled by sqrt(MP / 2), random direction),
  defocus (a disc of radius 1-2 px at 2 MP) or +-0.3 EV (on linear light), saved as
  JPEG quality 95;
* capture times 0.1-0.5 s apart, written as EXIF DateTimeOriginal + SubSecTimeOriginal
  with exiftool; bursts start 3-4 minutes apart;
* two look-alikes that are not part of the burst, taken 1 s after its last frame: the most
  similar *other* source photo (by the model's embedding), and a tight crop (55 %) of
  another part of the same photo, mirrored: a different shot of the same subject.

Then it runs the product's pipeline (``Scorer`` as ``iqs-daemon score`` runs it) on a copy
with grouping on, reads every photo's XMP back with exiftool and prints:

* the adjusted Rand index of the groups against the truth (look-alikes are singletons),
* false merges: the share of photos put in a group with a photo of another scene,
* the share of bursts whose untouched frame is the group's pick (``Xmp.iqs.GroupPick``),
* the cost per photo of ``score`` with and without grouping (CPU and wall time, the
  better of ``--repeat`` alternating runs on fresh copies, model loaded once),
* how the limits were chosen: the embedding similarity of burst frames to their burst
  against that of the look-alikes, and ARI / picks over a sweep of the settings.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from iqs_daemon import bursts
from iqs_daemon.burst_stage import HoldBursts
from iqs_daemon.config import Settings
from iqs_daemon.discovery import iter_candidates
from iqs_daemon.pipeline import Scorer
from iqs_daemon.runner import Hold

BURST_GAP_SECONDS = (180.0, 240.0)
FRAME_GAP_SECONDS = (0.1, 0.5)
LOOKALIKE_AFTER_SECONDS = 1.0
START = 1_780_000_000.0  # 2026-05-28, an arbitrary day


# --- making the bursts -----------------------------------------------------------------


@dataclass
class Truth:
    scene: dict[str, str] = field(default_factory=dict)  # file name -> scene (group) id
    untouched: dict[str, str] = field(default_factory=dict)  # scene -> untouched file name
    damage: dict[str, str] = field(default_factory=dict)  # file name -> what was done
    taken: dict[str, float] = field(default_factory=dict)  # file name -> capture time


def ari(truth: list[str], found: list[str]) -> float:
    """Adjusted Rand index of two labelings of the same items (Hubert and Arabie)."""
    def pairs(n: int) -> float:
        return n * (n - 1) / 2

    table = Counter(zip(truth, found, strict=True))
    sum_cells = sum(pairs(n) for n in table.values())
    sum_rows = sum(pairs(n) for n in Counter(truth).values())
    sum_cols = sum(pairs(n) for n in Counter(found).values())
    total = pairs(len(truth))
    expected = sum_rows * sum_cols / total if total else 0.0
    top = (sum_rows + sum_cols) / 2
    return 1.0 if top == expected else (sum_cells - expected) / (top - expected)


def _linear(rgb: np.ndarray) -> np.ndarray:
    x = rgb.astype(np.float32) / 255
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def _srgb(lin: np.ndarray) -> np.ndarray:
    lin = np.clip(lin, 0, 1)
    x = np.where(lin <= 0.0031308, lin * 12.92, 1.055 * lin ** (1 / 2.4) - 0.055)
    return np.clip(x * 255 + 0.5, 0, 255).astype(np.uint8)


def move(rgb: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    h, w = rgb.shape[:2]
    dx, dy = rng.uniform(-0.02, 0.02, 2) * w
    angle = rng.uniform(-1.0, 1.0)
    scale = 1.0 + rng.uniform(0.0, 0.03)  # a crop, brought back to the full size
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    m[:, 2] += (dx, dy)
    out = cv2.warpAffine(rgb, m, (w, h), flags=cv2.INTER_LANCZOS4, borderMode=cv2.BORDER_REFLECT)
    return out, f"shift {dx:+.0f},{dy:+.0f} px, rot {angle:+.2f}, crop {100 * (1 - 1 / scale):.1f}%"


def motion_blur(rgb: np.ndarray, length: float, angle: float) -> np.ndarray:
    size = math.ceil(length) | 1
    size = max(size, 3)
    kernel = np.zeros((size, size), np.float32)
    c = (size - 1) / 2
    for t in np.linspace(-length / 2, length / 2, 64):
        x, y = c + t * math.cos(angle), c + t * math.sin(angle)
        x0, y0 = math.floor(x), math.floor(y)
        fx, fy = x - x0, y - y0
        for xx, yy, wgt in ((x0, y0, (1 - fx) * (1 - fy)), (x0 + 1, y0, fx * (1 - fy)),
                            (x0, y0 + 1, (1 - fx) * fy), (x0 + 1, y0 + 1, fx * fy)):
            if 0 <= xx < size and 0 <= yy < size:
                kernel[yy, xx] += wgt
    kernel /= kernel.sum()
    return _srgb(cv2.filter2D(_linear(rgb), -1, kernel))


def defocus(rgb: np.ndarray, radius: float) -> np.ndarray:
    size = math.ceil(radius) * 2 + 3
    c = (size - 1) / 2
    yy, xx = np.mgrid[:size, :size]
    # A disc with an anti-aliased edge.
    kernel = np.clip(radius + 0.5 - np.hypot(xx - c, yy - c), 0, 1).astype(np.float32)
    kernel /= kernel.sum()
    return _srgb(cv2.filter2D(_linear(rgb), -1, kernel))


def exposure(rgb: np.ndarray, ev: float) -> np.ndarray:
    return _srgb(_linear(rgb) * 2.0 ** ev)


def damage(rgb: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    at_2mp = math.sqrt(rgb.shape[0] * rgb.shape[1] / 2e6)
    kind = rng.choice(["motion", "defocus", "exposure"])
    if kind == "motion":
        length = rng.uniform(1.0, 4.0)
        return motion_blur(rgb, length * at_2mp, rng.uniform(0, math.pi)), f"motion {length:.1f} px"
    if kind == "defocus":
        radius = rng.uniform(1.0, 2.0)
        return defocus(rgb, radius * at_2mp), f"defocus r {radius:.1f} px"
    ev = float(rng.choice([-0.3, 0.3]))
    return exposure(rgb, ev), f"{ev:+.1f} EV"


def lookalike_crop(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = rgb.shape[:2]
    ch, cw = int(h * 0.55), int(w * 0.55)
    corner = rng.integers(4)
    top = 0 if corner < 2 else h - ch
    left = 0 if corner % 2 == 0 else w - cw
    crop = rgb[top : top + ch, left : left + cw][:, ::-1]
    return cv2.resize(np.ascontiguousarray(crop), (w, h), interpolation=cv2.INTER_CUBIC)


def save_jpeg(path: Path, rgb: np.ndarray) -> None:
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])


def exif_time(seconds: float) -> tuple[str, str]:
    whole = math.floor(seconds)
    stamp = time.strftime("%Y:%m:%d %H:%M:%S", time.gmtime(whole))
    return stamp, f"{round((seconds - whole) * 1000):03d}"


def write_times(folder: Path, taken: dict[str, float]) -> None:
    """One exiftool process for all files (-execute per file)."""
    args: list[str] = []
    for name, seconds in taken.items():
        stamp, subsec = exif_time(seconds)
        args += [f"-DateTimeOriginal={stamp}", f"-SubSecTimeOriginal={subsec}",
                 "-overwrite_original", "-q", str(folder / name), "-execute"]
    with tempfile.NamedTemporaryFile("w", suffix=".args", delete=False) as fh:
        fh.write("\n".join(args) + "\n")
    try:
        subprocess.run(["exiftool", "-@", fh.name], check=True, capture_output=True)
    finally:
        Path(fh.name).unlink()


def make_bursts(sources: list[Path], out: Path, seed: int,
                embeddings: dict[str, np.ndarray]) -> Truth:
    rng = np.random.default_rng(seed)
    truth = Truth()
    when = START
    for b, src in enumerate(sources):
        scene = f"s{b:02d}"
        rgb = cv2.cvtColor(cv2.imread(str(src)), cv2.COLOR_BGR2RGB)
        frames = int(rng.integers(3, 9))
        untouched = int(rng.integers(frames))
        for f in range(frames):
            name = f"{scene}_{src.stem}_{f}.jpg"
            if f == untouched:
                shutil.copyfile(src, out / name)
                (out / name).chmod(0o644)
                truth.untouched[scene], truth.damage[name] = name, "untouched"
            else:
                moved, how = move(rgb, rng)
                damaged, what = damage(moved, rng)
                save_jpeg(out / name, damaged)
                truth.damage[name] = f"{what}; {how}"
            truth.scene[name], truth.taken[name] = scene, when
            when += rng.uniform(*FRAME_GAP_SECONDS)
        when += LOOKALIKE_AFTER_SECONDS - FRAME_GAP_SECONDS[0]
        others = [s for s in sources if s != src]
        if embeddings:
            others.sort(key=lambda s: -float(embeddings[s.name] @ embeddings[src.name]))
        other = others[0]
        for kind, pixels in (
            ("other", cv2.cvtColor(cv2.imread(str(other)), cv2.COLOR_BGR2RGB)),
            ("crop", lookalike_crop(rgb, rng)),
        ):
            name = f"{scene}_lookalike_{kind}_{src.stem}.jpg"
            save_jpeg(out / name, pixels)
            truth.scene[name], truth.taken[name] = f"{scene}-{kind}", when
            truth.damage[name] = f"look-alike ({kind}: {other.stem if kind == 'other' else 'crop'})"
            when += 1.0
        when += rng.uniform(*BURST_GAP_SECONDS)
    write_times(out, truth.taken)
    return truth


# --- running the product ---------------------------------------------------------------


class CapturingScorer(Scorer):
    """The product's scorer; also keeps each folder's frames for the settings sweep."""

    def __init__(self, *args: object, **kwargs: object):
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.frames: list[bursts.Frame] = []
        self.verdicts: list = []

    def stages(self, **kwargs):  # type: ignore[no-untyped-def]
        scorer = self

        class Capturing(HoldBursts):
            def release(self):  # type: ignore[no-untyped-def]
                scorer.frames += [s.frame for s in self.held]
                scorer.verdicts += [s.verdict for s in self.held]
                return super().release()

        return [Hold(Capturing(self.pass_for()), s.takes) if isinstance(s, Hold) else s
                for s in super().stages(**kwargs)]


def run_score(scorer: Scorer, folder: Path) -> tuple[float, float, int]:
    """(cpu seconds, wall seconds, photos) for one ``score`` pass over ``folder``."""
    candidates = list(iter_candidates([folder]))
    cpu, wall = time.process_time(), time.perf_counter()
    outcomes = list(scorer.process(candidates))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    failed = [o for o in outcomes if not o.ok]
    if failed:
        raise SystemExit(f"bursts.py: {len(failed)} photos failed, first: {failed[0].error}")
    return cpu, wall, len(outcomes)


def read_back(folder: Path) -> dict[str, dict]:
    out = subprocess.run(
        ["exiftool", "-j", "-q", "-XMP-iqs:Group", "-XMP-iqs:GroupPick", "-XMP-iqs:GroupSize",
         "-XMP-digiKam:PickLabel", "-XMP-iqs:Reasons", "-ext", "jpg", str(folder)],
        check=True, capture_output=True, text=True,
    ).stdout
    return {Path(r["SourceFile"]).name: r for r in json.loads(out)}


def evaluate(truth: Truth, group_of: dict[str, str], pick_of: dict[str, bool]) -> dict[str, float]:
    names = sorted(truth.scene)
    # A photo in no group is its own group.
    found = [group_of.get(n) or f"single-{n}" for n in names]
    labels = [truth.scene[n] for n in names]
    members: dict[str, set[str]] = {}
    for n, g in zip(names, found, strict=True):
        members.setdefault(g, set()).add(truth.scene[n])
    merged = sum(len(members[g]) > 1 for g in found)
    picked = sum(bool(pick_of.get(u)) for u in truth.untouched.values())
    return {"ari": ari(labels, found), "false_merges": merged / len(names),
            "untouched_picked": picked / len(truth.untouched)}


def offline(truth: Truth, frames: list[bursts.Frame], verdicts: list, policy, gap: float,
            similarity: float) -> dict[str, float]:
    """The same metrics from the captured frames, for other settings (no file written)."""
    config = bursts.BurstSettings(gap, similarity, bursts.PickLabel.PENDING)
    decided = bursts.decide_bursts(frames, verdicts, policy, config)
    group_of = {f.path.name: v.burst.id for f, v in zip(frames, decided, strict=True) if v.burst}
    pick_of = {f.path.name: bool(v.burst and v.burst.pick)
               for f, v in zip(frames, decided, strict=True)}
    return evaluate(truth, group_of, pick_of)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("source", nargs="?", type=Path,
                        default=Path(__file__).resolve().parents[2] / "shared/samples/photos")
    parser.add_argument("--work", type=Path, help="keep the made folder here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=2, help="timed runs with and without")
    args = parser.parse_args()
    sources = sorted(p for p in args.source.iterdir()
                     if p.suffix.lower() in (".jpg", ".jpeg") and not p.name.startswith("."))
    if len(sources) < 2:
        raise SystemExit(f"bursts.py: need at least 2 JPEG photos in {args.source}")
    work = args.work or Path(tempfile.mkdtemp(prefix="iqs-bursts-"))
    made = work / "made"
    shutil.rmtree(made, ignore_errors=True)
    made.mkdir(parents=True)
    settings = Settings()
    with CapturingScorer(settings, dry_run=True, group_bursts=True) as probe:
        # The look-alike "other photo" is the most similar source by the model's embedding.
        probe_dir = work / "sources"
        shutil.rmtree(probe_dir, ignore_errors=True)
        probe_dir.mkdir()
        for s in sources:
            shutil.copyfile(s, probe_dir / s.name)
        run_score(probe, probe_dir)
        embeddings = {f.path.name: f.embedding for f in probe.frames}
    truth = make_bursts(sources, made, args.seed, embeddings)
    (work / "truth.json").write_text(json.dumps(truth.damage, indent=1, sort_keys=True))
    print(f"made {len(truth.scene)} photos: {len(truth.untouched)} bursts "
          f"({len(truth.scene) - 2 * len(truth.untouched)} frames) and "
          f"{2 * len(truth.untouched)} look-alikes, in {made}")

    timings: dict[bool, list[tuple[float, float, int]]] = {True: [], False: []}
    scorer_on = CapturingScorer(settings, group_bursts=True)
    scorer_off = Scorer(settings, group_bursts=False, model=scorer_on.model)
    try:
        for r in range(args.repeat):
            for grouped in (True, False) if r % 2 == 0 else (False, True):
                folder = work / f"run-{r}-{'on' if grouped else 'off'}"
                shutil.rmtree(folder, ignore_errors=True)
                shutil.copytree(made, folder)
                scorer = scorer_on if grouped else scorer_off
                if grouped:
                    scorer_on.frames, scorer_on.verdicts = [], []
                timings[grouped].append(run_score(scorer, folder))
                if grouped:
                    product_folder = folder
        policy = scorer_on.policy
        frames, verdicts = scorer_on.frames, scorer_on.verdicts
    finally:
        scorer_on.close()
        scorer_off.close()

    tags = read_back(product_folder)
    group_of = {n: str(t.get("Group") or "") for n, t in tags.items()}
    pick_of = {n: t.get("GroupPick") in (True, "True") for n, t in tags.items()}
    result = evaluate(truth, group_of, pick_of)
    print(f"\nproduct (defaults: max_gap_seconds={settings.max_gap_seconds:g}, "
          f"min_similarity={settings.min_similarity:g}), read back by exiftool:")
    print(f"  adjusted Rand index     {result['ari']:.3f}   (target >= 0.95)")
    print(f"  false merges            {100 * result['false_merges']:.1f} %   (target <= 2 %)")
    print(f"  untouched frame picked  {100 * result['untouched_picked']:.0f} % of "
          f"{len(truth.untouched)} bursts   (target >= 90 %)")
    cost = {g: (min(t[0] / t[2] for t in runs), min(t[1] / t[2] for t in runs))
            for g, runs in timings.items()}
    extra_cpu = 100 * (cost[True][0] / cost[False][0] - 1)
    extra_wall = 100 * (cost[True][1] / cost[False][1] - 1)
    print(f"  cost per photo          CPU {1e3 * cost[False][0]:.0f} ms without grouping, "
          f"{1e3 * cost[True][0]:.0f} ms with ({extra_cpu:+.1f} %); wall "
          f"{1e3 * cost[False][1]:.0f} / {1e3 * cost[True][1]:.0f} ms ({extra_wall:+.1f} %)"
          f"   (target <= +5 %; best of {args.repeat})")

    missed = [(s, u) for s, u in truth.untouched.items() if not pick_of.get(u)]
    for scene, untouched in missed:
        chosen = [n for n, t in tags.items() if group_of.get(n) == group_of.get(untouched)
                  and pick_of.get(n)]
        print(f"  missed {scene}: picked {chosen[0] if chosen else '-'} "
              f"({truth.damage.get(chosen[0], '?') if chosen else ''}) over {untouched}")
    sweep(truth, frames, verdicts, policy)


def sweep(truth: Truth, frames: list[bursts.Frame], verdicts: list, policy) -> None:
    by_scene: dict[str, list[bursts.Frame]] = {}
    for f in frames:
        by_scene.setdefault(truth.scene[f.path.name], []).append(f)
    within: list[float] = []
    lookalike: list[float] = []
    for scene, members in by_scene.items():
        if "-" in scene:
            continue
        centre = np.sum([m.embedding for m in members], axis=0)
        centre /= np.linalg.norm(centre)
        within += [float(m.embedding @ centre) for m in members]
        for kind in ("other", "crop"):
            for m in by_scene.get(f"{scene}-{kind}", []):
                lookalike.append(float(m.embedding @ centre))
    print("\nhow the defaults were chosen (embedding cosine to the burst's mean):")
    print(f"  burst frames   min {min(within):.3f}  1st percentile "
          f"{np.percentile(within, 1):.3f}  median {np.median(within):.3f}")
    print(f"  look-alikes    max {max(lookalike):.3f}  99th percentile "
          f"{np.percentile(lookalike, 99):.3f}  median {np.median(lookalike):.3f}")
    print("  min_similarity  ARI    false merges  untouched picked   (max_gap_seconds 30)")
    for similarity in (0.80, 0.90, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99):
        r = offline(truth, frames, verdicts, policy, 30.0, similarity)
        print(f"  {similarity:<14.2f}  {r['ari']:.3f}  {100 * r['false_merges']:>9.1f} %  "
              f"{100 * r['untouched_picked']:>12.0f} %")
    print("  max_gap_seconds ARI   (min_similarity 0.96)")
    for gap in (0.3, 1.0, 2.0, 10.0, 30.0, 120.0, 600.0):
        r = offline(truth, frames, verdicts, policy, gap, 0.96)
        print(f"  {gap:<14g}  {r['ari']:.3f}")


if __name__ == "__main__":
    main()
