"""Turns bench/run's measurements into one Markdown table, with ratios and targets."""
import datetime
import sys

path, cores, mem_gib = sys.argv[1], sys.argv[2], sys.argv[3]
r = {}
for line in open(path):
    parts = line.rstrip("\n").split("\t")
    if len(parts) == 3:
        r[(parts[0], parts[1])] = parts[2]


def num(section, name):
    try:
        return float(r[(section, name)])
    except (KeyError, ValueError):
        return None


def fmt(v, digits=0):
    return "n/a" if v is None else f"{v:,.{digits}f}"


def ratio(a, b):
    return None if a is None or b in (None, 0) else a / b


def verdict(ok):
    return "n/a" if ok is None else ("met" if ok else "**missed**")


rows = []


def row(what, ferry, other, ratio_text, target, ok):
    rows.append(f"| {what} | {ferry} | {other} | {ratio_text} | {target} | {verdict(ok)} |")


fp, rp, bp = num("ferry_presign_64", "rps"), num("ref_presign_64", "rps"), num("bare_64", "rps")
fp99 = num("ferry_presign_64", "p99_ms")
x = ratio(fp, rp)
row("presign req/s, 64 conns (vs reference)", fmt(fp), fmt(rp), f"{fmt(x, 1)}x", "≥ 20x", None if x is None else x >= 20)
x = ratio(fp, bp)
row("presign req/s (vs bare axum)", fmt(fp), fmt(bp), f"{fmt(None if x is None else x * 100)}%", "≥ 50%", None if x is None else x >= 0.5)
row("presign p50 / p99 ms", f"{fmt(num('ferry_presign_64', 'p50_ms'), 2)} / {fmt(fp99, 2)}",
    f"{fmt(num('ref_presign_64', 'p50_ms'), 2)} / {fmt(num('ref_presign_64', 'p99_ms'), 2)}", "", "p99 < 5 ms",
    None if fp99 is None else fp99 < 5)
fc, rs, pg = num("ferry_confirm_1k", "rps"), num("ref_save_64", "rps"), num("pgbench_insert", "tps")
x = ratio(fc, rs)
row("confirm req/s (vs reference save)", fmt(fc), fmt(rs), f"{fmt(x, 2)}x", "≥ 1.5x", None if x is None else x >= 1.5)
x = ratio(fc, pg)
row("confirm req/s (vs pgbench INSERT tps)", fmt(fc), fmt(pg), f"{fmt(None if x is None else x * 100)}%", "≥ 60%", None if x is None else x >= 0.6)
row("confirm p50 / p99 ms", f"{fmt(num('ferry_confirm_1k', 'p50_ms'), 2)} / {fmt(num('ferry_confirm_1k', 'p99_ms'), 2)}",
    f"{fmt(num('ref_save_64', 'p50_ms'), 2)} / {fmt(num('ref_save_64', 'p99_ms'), 2)}", "", "", None)
row("presign → PUT 4 KiB → confirm, files/s", fmt(num("flow", "files_per_sec")), "", "", "", None)
lp99 = num("ferry_list_4", "p99_ms")
row("list ?limit=50, 100,000 files, 4 conns: p50 / p99 ms", f"{fmt(num('ferry_list_4', 'p50_ms'), 2)} / {fmt(lp99, 2)}", "",
    f"{fmt(num('ferry_list_4', 'rps'))} req/s", "p99 < 5 ms", None if lp99 is None else lp99 < 5)
l64, lrps = num("ferry_list_64", "p99_ms"), num("ferry_list_64", "rps")
pl, pl99 = num("pgbench_list", "tps"), num("pgbench_list", "p99_ms")
x = ratio(lrps, pl)
row("list req/s, 64 conns (vs pgbench, the same SELECT, 64 clients)", fmt(lrps), fmt(pl),
    f"{fmt(None if x is None else x * 100)}%", "≥ 50%", None if x is None else x >= 0.5)
x = ratio(l64, pl99)
row("list p99 ms, 64 conns (vs pgbench's p99)", fmt(l64, 2), fmt(pl99, 2), f"{fmt(x, 1)}x", "≤ 2x",
    None if x is None else x <= 2)
row("presign req/s at 16 / 64 / 256 conns",
    f"{fmt(num('ferry_presign_16', 'rps'))} / {fmt(fp)} / {fmt(num('ferry_presign_256', 'rps'))}",
    f"p99 {fmt(num('ferry_presign_16', 'p99_ms'), 2)} / {fmt(fp99, 2)} / {fmt(num('ferry_presign_256', 'p99_ms'), 2)} ms", "", "", None)
c1k, c1m = fc, num("ferry_confirm_1m", "rps")
x = ratio(c1m, c1k)
row("confirm req/s with 1,000 / 1,000,000 rows", f"{fmt(c1k)} / {fmt(c1m)}", "", f"{fmt(None if x is None else x * 100)}%",
    "within 20%", None if x is None else x >= 0.8)
dd = num("large", "dd_mb_per_s")
lm = num("large", "put_mb_per_s")
x = ratio(lm, dd)
row("1 GiB single PUT through the embedded store, MB/s (vs dd)", fmt(lm), fmt(dd), f"{fmt(None if x is None else x * 100)}%", "",
    None)
cli, aws, nosum = num("large", "cli_mb_per_s"), num("large", "aws_mb_per_s"), num("large", "cli_nosum_mb_per_s")
x = ratio(cli, aws)
row("`ferry upload` 1 GiB, MB/s (vs `aws s3 cp`)", fmt(cli), fmt(aws), f"{fmt(x, 2)}x", "≥ 1x", None if x is None else x >= 1)
x = ratio(cli, dd)
row("`ferry upload` 1 GiB, MB/s (vs dd)", fmt(cli), fmt(dd), f"{fmt(None if x is None else x * 100)}%", "≥ 70%",
    None if x is None else x >= 0.7)
row("`ferry upload --no-checksum` 1 GiB, MB/s", fmt(nosum), "", "", "", None)
page, page_cli = num("large", "page_mb_per_s"), num("large", "page_cli_mb_per_s")
x = ratio(page, page_cli)
row("the page in Chromium, 200 MiB, MB/s (vs `ferry upload` of it)", fmt(page), fmt(page_cli),
    f"{fmt(None if x is None else x * 100)}%", "≥ 70%", None if x is None else x >= 0.7)
for name, what in [("put", "single PUT"), ("cli", "ferry upload"), ("aws", "aws s3 cp"), ("page", "the page")]:
    growth = num("large", f"{name}_rss_growth_mib")
    row(f"Ferry's RSS growth during {what}, MiB", fmt(growth), "", "", "< 50 MiB", None if growth is None else growth < 50)
p1k, p1m = num("listing_1000", "page_us"), num("listing_1000000", "page_us")
x = ratio(p1m, p1k)
row("ListObjectsV2 page of 1,000 at 1,000 / 1,000,000 objects, ms (embedded store, in process)",
    f"{fmt(None if p1k is None else p1k / 1000, 2)} / {fmt(None if p1m is None else p1m / 1000, 2)}", "",
    f"{fmt(x, 2)}x", "≤ 2x", None if x is None else x <= 2)
q1k, q1m = num("listing_1000", "prefixes_us"), num("listing_1000000", "prefixes_us")
row("ListObjectsV2 delimiter page (100 prefixes) at 1,000 / 1,000,000 objects, ms",
    f"{fmt(None if q1k is None else q1k / 1000, 2)} / {fmt(None if q1m is None else q1m / 1000, 2)}", "", "", "", None)
steps = [num("memory", f"ferry_after_{step}_kib") for step in ("presign", "presign_256", "confirm", "list")]
row("Ferry's peak RSS after presign 64 / presign 256 / confirm / list, MiB",
    " / ".join(fmt(None if v is None else v / 1024) for v in steps), "", "", "", None)
fm, rm = num("memory", "ferry_peak_kib"), num("memory", "ref_peak_kib")
x = ratio(fm, rm)
row("peak RSS under all loads, MiB", fmt(None if fm is None else fm / 1024), fmt(None if rm is None else rm / 1024),
    f"{fmt(None if x is None else x * 100)}%", "≤ 15%", None if x is None else x <= 0.15)

print(f"Ferry benchmark, {datetime.date.today()}: {cores} cores, {mem_gib} GiB, wrk and Postgres on the same machine, loopback.")
print("Other = the guide's server (reference-node) or the named ceiling. Non-2xx answers: "
      + ", ".join(f"{k[0]} {v}" for k, v in sorted(r.items()) if k[1] == "non2xx" and v not in ("0", "?")) or "none")
print()
print("| measure | Ferry | other | ratio | target | |")
print("| --- | --- | --- | --- | --- | --- |")
print("\n".join(rows))
