"""Throughput, latency and memory of iqs-daemon against the floors set by decoding and the
model (issue #7). One command, its own inputs, one table:

    python benchmarks/bench.py            # full run: 200 x 24 MP JPEG, 2,000 daemon photos
    python benchmarks/bench.py --quick    # a couple of minutes, same table

See benchmarks/README.md for what each row means and the last measured table.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import bench_inproc as inproc  # noqa: E402
import bench_procs as procs  # noqa: E402
from bench_inputs import InputSet, make_inputs  # noqa: E402
from bench_standin import build_standin  # noqa: E402

from iqs_daemon.cli.common import parse_set_options  # noqa: E402
from iqs_daemon.config import Paths, load_settings  # noqa: E402
from iqs_daemon.pipeline import batch_size_for, default_jobs  # noqa: E402

MB = 1024 * 1024
TARGETS = {"floor_ratio": 0.85, "naive_ratio": 3.0, "p95_seconds": 1.5, "rss_mb": 400,
           "rss_growth": 0.10, "model_ms": 40.0}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", type=Path, default=REPO / "models" / "iqs-quality.onnx",
                   help="ONNX model (default: the shipped models/iqs-quality.onnx)")
    p.add_argument("--standin", choices=("lite0", "tiny"),
                   help="use a stand-in model instead (lite0 needs the train extra)")
    p.add_argument("--samples", type=Path, default=REPO.parent / "shared" / "samples" / "photos",
                   help="JPEG photos the inputs are made from (default: %(default)s)")
    p.add_argument("--count", type=int, default=200, help="24 MP JPEGs (default 200)")
    p.add_argument("--heic", type=int, default=10, help="20 MP HEICs (default 10)")
    p.add_argument("--raw", type=int, default=10, help="RAWs with a 24 MP preview (default 10)")
    p.add_argument("--naive-count", type=int, help="photos through the naive pipeline "
                   "(default: a quarter of --count, it is slow)")
    p.add_argument("--latency-photos", type=int, default=40,
                   help="photos copied one at a time into the idle daemon (default 40)")
    p.add_argument("--daemon-photos", type=int, default=2000,
                   help="photos the daemon scores before its memory is read again (default 2000)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where the model runs, as iqs-daemon --device (default: auto)")
    p.add_argument("--batch-size", type=int,
                   help="photos per inference (default: the product's choice for the device)")
    p.add_argument("--quick", action="store_true",
                   help="small run: 24 JPEGs, 2 HEIC, 2 RAW, 6 latency and 200 daemon photos")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="passed to iqs-daemon score and start (e.g. model.jobs=1)")
    p.add_argument("--work-dir", type=Path,
                   help="keep inputs here and reuse them next time (default: a temp dir)")
    p.add_argument("--json", type=Path, help="also write the figures to this file")
    args = p.parse_args(argv)
    if args.quick:
        args.count, args.heic, args.raw = 24, 2, 2
        args.latency_photos, args.daemon_photos = 6, 200
    args.naive_count = args.naive_count or max(4, args.count // 4)
    return args


def hardlink_tree(files: list[Path], folder: Path) -> Path:
    """A fresh folder of the photos, as hard links: every metadata write replaces the file
    by a rename, so the originals stay untouched for the next stage."""
    folder.mkdir(parents=True)
    for f in files:
        os.link(f, folder / f.name)
    return folder


def warm_page_cache(inputs: InputSet) -> None:
    for f in [*inputs.jpeg, *inputs.heic, *inputs.raw]:
        f.read_bytes()


def run(args: argparse.Namespace, work: Path) -> dict:
    cores = default_jobs()
    model_path = build_standin(args.standin, work) if args.standin else args.model
    if not model_path.is_file():
        raise SystemExit(f"{model_path} not found: pass --model FILE or --standin lite0")
    sets = [f"model.model_path={model_path}", f"model.device={args.device}", *args.sets]
    if args.batch_size:
        sets.append(f"model.batch_size={args.batch_size}")
    log(f"inputs: {args.count} JPEG, {args.heic} HEIC, {args.raw} RAW in {work}")
    inputs = make_inputs(work / "inputs", args.samples, jpeg=args.count, heic=args.heic,
                         raw=args.raw, workers=cores)
    warm_page_cache(inputs)
    model = inproc.load_model(model_path, threads=cores, device=args.device)
    nowhere = work / "no-config"  # the user's own config file must not change the figures
    settings = load_settings(Paths(nowhere, nowhere, nowhere), None, parse_set_options(sets))
    batch_size = batch_size_for(settings, model.providers)
    r: dict = {"model_path": str(model_path), "cores": cores, "batch_size": batch_size,
               "on_gpu": model.providers[0] != "CPUExecutionProvider",
               "counts": {"jpeg": args.count, "heic": args.heic, "raw": args.raw,
                          "naive": args.naive_count}, "jpeg_mb": inputs.jpeg_mb, "sets": args.sets}
    r["model_label"] = model.info.model_label
    log("1. decode floors: the library alone, and the product's decoding path")
    for kind in ("jpeg", "heic", "raw"):
        files = getattr(inputs, kind)
        if files:
            r[f"libdecode_{kind}"] = figures(inproc.library_decode_floor(kind, files, cores))
            r[f"decode_{kind}"] = figures(inproc.decode_floor(model, files, cores))
    log("2. model floor")
    views = [inproc.decode_views(model, p) for p in inputs.jpeg[:max(16, batch_size * 4)]]
    r["model_floor"] = figures(inproc.model_floor(model, views, batch_size, repeats=2))
    r["model_ms_b8"] = inproc.model_floor(model, views[:16], 8, repeats=2).ms_per_photo
    if not r["on_gpu"]:
        rate, best_batch = inproc.library_model_floor(model_path, views[:16], cores)
        r["libmodel_floor"], r["libmodel_batch"] = figures(rate), best_batch
    del views
    log("3. naive pipeline")
    naive_dir = hardlink_tree(inputs.jpeg[:args.naive_count], work / "naive")
    r["naive"] = figures(inproc.naive_pipeline(model, sorted(naive_dir.iterdir()), settings))
    del model
    gc.collect()
    log("4. iqs-daemon score, end to end")
    for kind in ("jpeg", "heic", "raw"):
        files = getattr(inputs, kind)
        if files:
            folder = hardlink_tree(files, work / f"score-{kind}")
            run_ = procs.run_score(folder, len(files), work / f"home-score-{kind}", sets, cores)
            r[f"score_{kind}"] = {
                "per_second": run_.per_second, "reported_per_second": run_.reported_per_second,
                "cpu": run_.cpu_utilisation, "cpu_ms": 1e3 * run_.cpu_seconds / len(files),
                "peak_rss_mb": run_.peak_rss_main / MB,
                "peak_tree_rss_mb": run_.peak_rss_tree / MB, "wall_seconds": run_.wall_seconds}
            if kind == "jpeg" and len(files) > 1:
                r["score_jpeg"].update(steady_state(run_, files, work, sets, cores))
    log(f"5-6. daemon: {args.latency_photos} photos one at a time, then {args.daemon_photos}")
    d = procs.measure_daemon(inputs.jpeg, work / "home-daemon", sets,
                             latency_photos=args.latency_photos, bulk_photos=args.daemon_photos)
    r["daemon"] = {"median_s": d.median_seconds, "p95_s": d.p95_seconds,
                   "latencies_s": d.latencies_seconds, "rss_loaded_mb": d.rss_loaded / MB,
                   "rss_warm_mb": d.rss_warm / MB, "rss_after_mb": d.rss_after / MB,
                   "rss_peak_mb": d.rss_peak / MB,
                   "tree_rss_after_mb": d.tree_rss_after / MB, "growth": d.growth,
                   "warmup_photos": d.warmup_photos, "bulk_photos": d.bulk_photos,
                   "bulk_per_second": d.bulk_per_second}
    return r


def steady_state(whole: procs.ScoreRun, files: list, work: Path, sets: list[str], cores: int,
                 runs: int = 3) -> dict:
    """The start-up (a one-photo run: interpreter, model load, that photo; the median of
    ``runs``) and the whole run without it: its other photos over the time and CPU
    they added. The target is about this steady state."""
    ones = [procs.run_score(hardlink_tree(files[:1], work / f"score-one-{i}"), 1,
                            work / f"home-score-one-{i}", sets, cores) for i in range(runs)]
    wall = statistics.median(o.wall_seconds for o in ones)
    cpu = statistics.median(o.cpu_seconds for o in ones)
    extra = whole.photos - 1
    return {"startup_seconds": wall, "startup_cpu_seconds": cpu,
            "steady_per_second": extra / max(1e-9, whole.wall_seconds - wall),
            "steady_cpu_ms": 1e3 * max(0.0, whole.cpu_seconds - cpu) / extra,
            "steady_cpu": (whole.cpu_seconds - cpu) / max(1e-9, whole.wall_seconds - wall) / cores}


def steady(e2e: dict) -> dict:
    """``score``'s steady-state figures where measured (else the whole run's)."""
    if "steady_per_second" not in e2e:
        return e2e
    return {**e2e, "per_second": e2e["steady_per_second"], "cpu_ms": e2e["steady_cpu_ms"]}


def figures(rate: inproc.Rate) -> dict:
    return {"per_second": rate.per_second, "cpu_ms": rate.cpu_ms_per_photo}


def combined(decode: float, model: float, *, on_gpu: bool = False) -> float:
    """On a CPU both stages share the cores, so their times per photo add up; with a GPU
    doing inference the slower stage sets the pace."""
    return min(decode, model) if on_gpu else 1 / (1 / decode + 1 / model)


def hardware_floor(r: dict) -> float | None:
    """Photos/s the hardware and libraries allow: bare reduced decode + the model alone."""
    if "libmodel_floor" not in r or "libdecode_jpeg" not in r:
        return None
    return combined(r["libdecode_jpeg"]["per_second"], r["libmodel_floor"]["per_second"])


def render(r: dict) -> str:
    """The table: one row per measurement, then each target with its ratio."""
    c, e2e, d = r["counts"], r["score_jpeg"], r["daemon"]
    dec, mod, naive = r["decode_jpeg"], r["model_floor"], r["naive"]
    gpu = r.get("on_gpu", False)
    floor = combined(dec["per_second"], mod["per_second"], on_gpu=gpu)
    floor_cpu_ms = dec["cpu_ms"] + mod["cpu_ms"]
    hw = hardware_floor(r)
    rows = []
    if hw is not None:
        hw_dec, hw_mod = r["libdecode_jpeg"], r["libmodel_floor"]
        rows += [
            ("0a. hardware decode floor, JPEG", hw_dec,
             f"cv2.imread(IMREAD_REDUCED_COLOR_2) alone, {r['cores']} threads"),
            (f"0b. hardware model floor, batch {r['libmodel_batch']}", hw_mod,
             f"{1e3 / hw_mod['per_second']:.1f} ms/photo, ONNX Runtime defaults (arena on), "
             f"best of batch 1 and 8"),
            ("   hardware combined floor", {"per_second": hw,
                                            "cpu_ms": hw_dec["cpu_ms"] + hw_mod["cpu_ms"]},
             "1 / (1/decode + 1/model): the target's reference"),
        ]
    rows += [
        ("1. product decode path, 24 MP JPEG", dec, f"decode + views, {r['cores']} threads, "
         f"{c['jpeg']} photos of {r['jpeg_mb']:.1f} MB"),
        (f"2. product model path, batch {r['batch_size']}", mod,
         f"{1e3 / mod['per_second']:.1f} ms/photo, "
         + ("GPU" if gpu else f"{r['cores']} intra-op threads")),
        ("   product combined path", {"per_second": floor, "cpu_ms": floor_cpu_ms},
         "min(decode, model): GPU" if gpu else "1 / (1/decode + 1/model); CPU: the sum"),
        ("3. naive pipeline", naive, f"full imread, batch 1, write; {c['naive']} photos"),
        ("4. iqs-daemon score", e2e,
         f"CPU {100 * e2e['cpu']:.0f} % of {r['cores']} cores; peak RSS {e2e['peak_rss_mb']:.0f} "
         f"MB, with exiv2 process {e2e['peak_tree_rss_mb']:.0f} MB; from model load on: "
         f"{e2e['reported_per_second']:.2f}/s"),
    ]
    if "steady_per_second" in e2e:
        rows.append(("   score, steady state", steady(e2e),
                     f"start-up apart: CPU {100 * e2e['steady_cpu']:.0f} % of {r['cores']} cores; "
                     f"a one-photo run takes {e2e['startup_seconds']:.2f} s, "
                     f"{1e3 * e2e['startup_cpu_seconds']:.0f} ms CPU"))
    for kind, label in (("heic", "20 MP HEIC"), ("raw", "RAW, 24 MP preview")):
        if f"score_{kind}" in r:
            fl, sc = r[f"decode_{kind}"], r[f"score_{kind}"]
            ratio = sc["per_second"] / combined(fl["per_second"], mod["per_second"], on_gpu=gpu)
            lib = r.get(f"libdecode_{kind}")
            if lib is not None:
                what = "libheif decode" if kind == "heic" else "preview JPEG decode"
                rows.append((f"   {label}: hardware decode floor", lib, f"{what} alone"))
            rows.append((f"   {label}: decode path", fl, f"{c[kind]} photos"))
            hw_note = ""
            if lib is not None and "libmodel_floor" in r:
                hw_kind = combined(lib["per_second"], r["libmodel_floor"]["per_second"])
                hw_note = f"; {sc['per_second'] / hw_kind:.0%} of its hardware floor"
            rows.append((f"   {label}: score", sc, f"{ratio:.0%} of its product path{hw_note} "
                         "(start-up weighs on few photos)"))
    table = [(name, f"{v['per_second']:.2f}", f"{v['cpu_ms']:.0f}", note)
             for name, v, note in rows]
    table += [
        ("5. daemon latency", f"{d['median_s']:.2f} / {d['p95_s']:.2f} s", "",
         f"median / p95, file complete -> XMP readable; {len(d['latencies_s'])} photos"),
        ("6. daemon RSS", f"{d['rss_warm_mb']:.0f} / {d['rss_after_mb']:.0f} MB", "",
         f"idle after {d['warmup_photos']} photos / after {d['bulk_photos']} more "
         f"({d['bulk_per_second']:.2f}/s); at start {d['rss_loaded_mb']:.0f} MB, peak "
         f"{d['rss_peak_mb']:.0f} MB, "
         f"with exiv2 process {d['tree_rss_after_mb']:.0f} MB"),
    ]
    header = ("measurement", "photos/s", "CPU ms/photo", "notes")
    widths = [max(len(row[i]) for row in [header, *table]) for i in range(3)]
    lines = [f"model {r['model_label']} ({Path(r['model_path']).name}), batch {r['batch_size']}, "
             f"{r['cores']} cores, {r['cpu_name']}; {r['date']}",
             "  ".join((f"{header[0]:<{widths[0]}}", f"{header[1]:>{widths[1]}}",
                        f"{header[2]:>{widths[2]}}", header[3]))]
    lines += ["  ".join((f"{a:<{widths[0]}}", f"{b:>{widths[1]}}", f"{cpu:>{widths[2]}}", n))
              for a, b, cpu, n in table]
    t = TARGETS
    basis = "steady state (start-up apart); " if "steady_per_second" in e2e else ""
    e2e = steady(e2e)  # the targets are about the steady state
    checks = []
    if hw is not None:
        hw_cpu = r["libdecode_jpeg"]["cpu_ms"] + r["libmodel_floor"]["cpu_ms"]
        checks.append(
            ("end-to-end / hardware floor", f"{e2e['per_second'] / hw:.0%}",
             e2e["per_second"] / hw >= t["floor_ratio"], f">= {t['floor_ratio']:.0%}",
             f"{basis}CPU time: floor / end-to-end = {hw_cpu / e2e['cpu_ms']:.0%}"))
    checks += [
        ("end-to-end / product path", f"{e2e['per_second'] / floor:.0%}", True, "report",
         f"CPU time: path / end-to-end = {floor_cpu_ms / e2e['cpu_ms']:.0%}"),
        ("end-to-end / naive", f"{e2e['per_second'] / naive['per_second']:.2f}x",
         e2e["per_second"] / naive["per_second"] >= t["naive_ratio"],
         f">= {t['naive_ratio']:.0f}x", f"{basis}CPU time: {naive['cpu_ms'] / e2e['cpu_ms']:.2f}x"),
        ("daemon latency p95", f"{d['p95_s']:.2f} s", d["p95_s"] <= t["p95_seconds"],
         f"<= {t['p95_seconds']} s", ""),
        ("daemon RSS, model loaded", f"{d['rss_warm_mb']:.0f} MB",
         d["rss_warm_mb"] <= t["rss_mb"], f"<= {t['rss_mb']} MB",
         f"peak while scoring {d['rss_peak_mb']:.0f} MB"),
        (f"daemon RSS after {d['bulk_photos']} photos", f"{d['growth']:+.1%}",
         abs(d["growth"]) <= t["rss_growth"], f"within +/-{t['rss_growth']:.0%}", ""),
        ("model only, batch 8", f"{r['model_ms_b8']:.1f} ms/photo",
         r["model_ms_b8"] <= t["model_ms"], f"<= {t['model_ms']:.0f} ms/photo", ""),
    ]
    lines.append("")
    w = max(len(ch[1]) for ch in checks)
    for name, value, ok, target, note in checks:
        lines.append(f"{name:<{widths[0]}}  {value:>{w}}  {'met   ' if ok else 'MISSED'}  "
                     f"target {target}{'; ' + note if note else ''}")
    return "\n".join(lines)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def log(message: str) -> None:
    print(f"[{datetime.datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="iqs-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    for stale in work.iterdir():  # earlier runs' outputs; the inputs are reused
        if stale.name not in ("inputs",) and not stale.name.startswith("standin-"):
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    try:
        results = run(args, work)
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    results["date"] = datetime.datetime.now().astimezone().isoformat(timespec="minutes")
    results["cpu_name"] = cpu_name()
    print(render(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
