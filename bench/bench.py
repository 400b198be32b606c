#!/usr/bin/env python3
"""Thumbnail benchmark: photo-api's engine against libvips, ImageMagick and Pillow.

Driven by bench/run.sh (which installs the tools and builds the engine); can be run
directly once they exist:  python3 bench/bench.py --corpus DIR --engine PATH [--reps 3]

For each size (256, 1024) and core count (1, 2), every repetition runs each tool once
over all JPEGs of the corpus, alternating with our engine (ours, vipsthumbnail, ours,
pyvips, ours, Pillow, ours, ImageMagick), pinned with `taskset` and measured with
`/usr/bin/time -v` (user+sys CPU, wall, peak RSS of the largest process). Reported:
medians over repetitions, and paired ratios (median of per-repetition ratios, each
tool against the engine run right before it, and against pyvips/Pillow of the same
repetition). SSIM is against a full-quality reference: full-size decode + Pillow
LANCZOS resize to the tool's output size, luma, 7x7 window (skimage defaults).

Modes used internally: `worker pyvips|pillow SIZE OUTDIR FILE...` (one process's share).
"""

import argparse
import glob
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

QUALITY = 80


# --------------------------------------------------------------------------- workers
def worker(tool, size, outdir, files):
    if tool == "pyvips":
        import pyvips

        for f in files:
            stem = os.path.splitext(os.path.basename(f))[0]
            im = pyvips.Image.thumbnail(f, size, height=size)
            im.jpegsave(os.path.join(outdir, stem + ".jpg"), Q=QUALITY, strip=True)
    elif tool == "pillow":
        from PIL import Image, ImageOps

        for f in files:
            stem = os.path.splitext(os.path.basename(f))[0]
            with Image.open(f) as im:
                # thumbnail() uses JPEG draft mode (DCT scaling) with reducing_gap=2.
                im.thumbnail((size, size), Image.Resampling.LANCZOS)
                im = ImageOps.exif_transpose(im)
                im.convert("RGB").save(os.path.join(outdir, stem + ".jpg"), quality=QUALITY)
    else:
        raise SystemExit(f"unknown worker {tool}")


# --------------------------------------------------------------------------- SSIM
def ssim(a, b):
    """Mean SSIM of two equal-size 2-D float arrays (7x7 uniform window, as skimage)."""
    import numpy as np

    win = 7
    if a.shape[0] < win or a.shape[1] < win:
        return float("nan")
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def box(x):
        s = np.cumsum(np.cumsum(np.pad(x, ((1, 0), (1, 0))), axis=0), axis=1)
        return (s[win:, win:] - s[:-win, win:] - s[win:, :-win] + s[:-win, :-win]) / (win * win)

    n = win * win
    cov = n / (n - 1)
    ma, mb = box(a), box(b)
    va = (box(a * a) - ma * ma) * cov
    vb = (box(b * b) - mb * mb) * cov
    vab = (box(a * b) - ma * mb) * cov
    s = ((2 * ma * mb + c1) * (2 * vab + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2))
    return float(s.mean())


def quality(files, outdirs):
    """{tool: (mean SSIM, mean bytes, n)} for the outputs in outdirs {tool: dir}."""
    import numpy as np
    from PIL import Image, ImageOps

    acc = {t: [] for t in outdirs}
    sizes = {t: [] for t in outdirs}
    for f in files:
        stem = os.path.splitext(os.path.basename(f))[0]
        with Image.open(f) as im:
            im.load()
            full = ImageOps.exif_transpose(im).convert("RGB")
        refs = {}
        for t, d in outdirs.items():
            p = os.path.join(d, stem + ".jpg")
            if not os.path.exists(p):
                continue
            sizes[t].append(os.path.getsize(p))
            with Image.open(p) as o:
                out = o.convert("L")
            if out.size not in refs:
                refs[out.size] = np.asarray(
                    full.resize(out.size, Image.Resampling.LANCZOS).convert("L"), dtype=np.float64
                )
            acc[t].append(ssim(refs[out.size], np.asarray(out, dtype=np.float64)))
    return {
        t: (
            statistics.fmean(acc[t]) if acc[t] else float("nan"),
            statistics.fmean(sizes[t]) if sizes[t] else float("nan"),
            len(acc[t]),
        )
        for t in outdirs
    }


# --------------------------------------------------------------------------- runs
def timed(cmd, cpus, env=None):
    """Runs cmd pinned to cpus under /usr/bin/time -v: (cpu_s, wall_s, rss_mib)."""
    full = ["taskset", "-c", cpus, "/usr/bin/time", "-v"] + cmd
    t0 = time.monotonic()
    p = subprocess.run(full, capture_output=True, text=True, env=env)
    wall = time.monotonic() - t0
    if p.returncode != 0:
        sys.stderr.write(p.stderr[-3000:])
        raise SystemExit(f"failed: {' '.join(cmd[:6])} ...")
    user = float(re.search(r"User time \(seconds\): ([\d.]+)", p.stderr).group(1))
    sys_ = float(re.search(r"System time \(seconds\): ([\d.]+)", p.stderr).group(1))
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1))
    return user + sys_, wall, rss / 1024


def shard(files, n):
    return [files[i::n] for i in range(n)]


def fanout(cmds):
    """One shell running cmds in parallel (each is a list), waiting for all."""
    import shlex

    # `wait` alone returns 0 even if a job failed: check each job.
    body = (
        "pids=''; "
        + "; ".join(" ".join(shlex.quote(a) for a in c) + " & pids=\"$pids $!\"" for c in cmds)
        + "; rc=0; for p in $pids; do wait $p || rc=1; done; exit $rc"
    )
    return ["sh", "-c", body]


def commands(tool, size, ncores, files, outdir, engine, me):
    env = dict(os.environ, VIPS_CONCURRENCY="1", OMP_NUM_THREADS="1", MAGICK_THREAD_LIMIT="1")
    if tool == "ours":
        return [engine, "--size", str(size), "--threads", str(ncores), "--quality", str(QUALITY),
                "--out", outdir] + files, env
    if tool == "vipsthumbnail":
        cmds = [["vipsthumbnail", "-s", f"{size}x{size}", "-o",
                 os.path.join(outdir, f"%s.jpg[Q={QUALITY},strip]")] + part
                for part in shard(files, ncores)]
        return (cmds[0] if ncores == 1 else fanout(cmds)), env
    if tool in ("pyvips", "pillow"):
        cmds = [[sys.executable, me, "worker", tool, str(size), outdir] + part
                for part in shard(files, ncores)]
        return (cmds[0] if ncores == 1 else fanout(cmds)), env
    if tool == "imagemagick":
        # One process per image (how it is normally used); jpeg:size hint only when
        # the image is larger than twice the target (a larger hint upscales in decode).
        script = (
            'f="$1"; s="$2"; o="$3"; q="$4"; hint=$5; '
            'if [ "$hint" = 1 ]; then d="-define jpeg:size=$((s*2))x$((s*2))"; else d=""; fi; '
            'exec /usr/bin/convert $d "$f" -auto-orient -thumbnail "${s}x${s}" -strip '
            '-quality "$q" "$o/$(basename "${f%.*}").jpg"'
        )
        from PIL import Image

        lines = []
        for f in files:
            with Image.open(f) as im:
                hint = 1 if min(im.size) > 2 * size else 0
            lines.append(f"{f}\t{hint}")
        listfile = os.path.join(outdir, "..", f"im-list-{size}.txt")
        with open(listfile, "w") as fh:
            fh.write("\n".join(lines) + "\n")
        # xargs passes $1=file $2=hint: reorder them for the script
        body = (
            f"tr '\\t' '\\n' < '{listfile}' | xargs -d '\\n' -n 2 -P {ncores} "
            f"sh -c 'f=\"$1\"; h=\"$2\"; set -- \"$f\" {size} \"{outdir}\" {QUALITY} \"$h\"; {script}' _"
        )
        return ["sh", "-c", body], env
    raise SystemExit(tool)


def fmt(v, spec):
    return "–" if v is None or v != v else format(v, spec)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--engine", required=True)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--sizes", default="256,1024")
    ap.add_argument("--cores", default="1,2")
    ap.add_argument("--tools", default="vipsthumbnail,pyvips,pillow,imagemagick")
    ap.add_argument("--no-im-1024", action="store_true", help="skip ImageMagick at 1024 px")
    args = ap.parse_args()

    files = sorted(glob.glob(os.path.join(args.corpus, "jpeg", "*.jpg")))
    if not files:
        raise SystemExit(f"no JPEGs in {args.corpus}/jpeg")
    me = os.path.abspath(__file__)
    ncpu = os.cpu_count() or 1
    work = tempfile.mkdtemp(prefix="photo-bench-")
    print(f"corpus: {len(files)} JPEGs in {args.corpus}; reps={args.reps}; "
          f"loadavg at start: {open('/proc/loadavg').read().split()[:3]}", flush=True)
    out_md = []
    try:
        for size in [int(s) for s in args.sizes.split(",")]:
            tools = [t for t in args.tools.split(",") if t]
            if size >= 1024 and args.no_im_1024 and "imagemagick" in tools:
                tools.remove("imagemagick")
            qual_cache = None
            for ncores in [int(c) for c in args.cores.split(",")]:
                if ncores > ncpu:
                    continue
                cpus = ",".join(str(i) for i in range(ncores))
                runs = {t: [] for t in ["ours"] + tools}  # (cpu, wall, rss)
                paired = {t: [] for t in tools}  # ours/tool throughput, adjacent pairs
                for rep in range(args.reps):
                    for tool in tools:
                        pair = {}
                        for t in ("ours", tool):
                            d = os.path.join(work, f"{size}-{ncores}-{t}")
                            shutil.rmtree(d, ignore_errors=True)
                            os.makedirs(d)
                            cmd, env = commands(t, size, ncores, files, d, args.engine, me)
                            r = timed(cmd, cpus, env)
                            runs[t].append(r)
                            pair[t] = r
                        paired[tool].append(pair[tool][1] / pair["ours"][1])
                    print(f"  size {size}, {ncores} core(s), rep {rep + 1}/{args.reps} done; "
                          f"load {open('/proc/loadavg').read().split()[0]}", flush=True)
                # per-rep throughput ratios against pyvips and Pillow (same repetition)
                ips = {t: [len(files) / r[1] for r in runs[t]] for t in runs}
                # ours has one run per paired tool per rep: use the run paired with each
                def rep_ips(t):
                    if t != "ours":
                        return ips[t]
                    k = len(tools)
                    return [statistics.fmean(ips["ours"][i * k:(i + 1) * k]) for i in range(args.reps)]

                def ratio_to(t, base):
                    if base not in runs or t == base:
                        return None
                    return statistics.median(a / b for a, b in zip(rep_ips(t), rep_ips(base)))

                if qual_cache is None:  # from the first core count's last repetition
                    qual_cache = quality(
                        files, {t: os.path.join(work, f"{size}-{ncores}-{t}") for t in runs})
                hdr = (f"\n### {size} px, {ncores} core{'s' if ncores > 1 else ''} "
                       f"(`taskset -c {cpus}`), {len(files)} JPEGs, median of {args.reps}\n\n"
                       "| pipeline | images/s | CPU s | peak RSS MiB | SSIM | mean KiB | "
                       "× pyvips | × Pillow | ours ÷ it (paired) |\n"
                       "|---|---:|---:|---:|---:|---:|---:|---:|---:|")
                lines = [hdr]
                names = {"ours": "photo-api engine (turbojpeg shrink-on-load)",
                         "vipsthumbnail": "vipsthumbnail (one process per core)",
                         "pyvips": "pyvips `thumbnail` in process",
                         "pillow": "Pillow `thumbnail` (draft mode)",
                         "imagemagick": "ImageMagick `convert -thumbnail`, per image"}
                for t in ["ours"] + tools:
                    rs = runs[t]
                    cpu = statistics.median(r[0] for r in rs)
                    wall = statistics.median(r[1] for r in rs)
                    rss = statistics.median(r[2] for r in rs)
                    s, kb, _ = qual_cache.get(t, (None, None, 0))
                    pr = statistics.median(paired[t]) if t in paired else None
                    lines.append(
                        f"| {names.get(t, t)} | {len(files) / wall:.1f} | {cpu:.2f} | {rss:.0f} | "
                        f"{fmt(s, '.4f')} | {fmt(kb / 1024 if kb else None, '.1f')} | "
                        f"{fmt(ratio_to(t, 'pyvips'), '.2f')} | {fmt(ratio_to(t, 'pillow'), '.2f')} | "
                        f"{fmt(pr, '.2f')} |")
                block = "\n".join(lines)
                print(block, flush=True)
                out_md.append(block)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nloadavg at end: {open('/proc/loadavg').read().split()[:3]}")
    print("\n# Markdown (all tables)\n" + "\n".join(out_md))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        worker(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5:])
    else:
        main()
