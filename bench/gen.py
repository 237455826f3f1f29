#!/usr/bin/env python3
"""Writes N minute bars (seeded random walk around $100, prices in cents) as one CSV that every
tool reads: Datetime,Open,High,Low,Close,Volume with naive New York 'YYYY-MM-DD HH:MM:SS'
times, 390 bars a weekday from 09:30 to 15:59 (holidays are not skipped; no DST gap is hit).

    gen.py BARS OUT.csv [SEED]
    gen.py BARS OUTDIR [SEED] --symbols K   K files S01.csv ... (BARS each, seeds SEED+k,
                                             volume 500-1999 so volume filters can trigger)
"""
import os, sys, datetime

def write(n, out, seed, vary_volume=False):
    x = seed & 0xFFFFFFFFFFFFFFFF
    def rnd(m):
        nonlocal x
        x = (x + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
        z = x
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        return (z ^ (z >> 31)) % m
    t = datetime.datetime(2020, 1, 2, 9, 30)
    step = datetime.timedelta(minutes=1)
    c = 10000
    with open(out, "w", buffering=1 << 20) as f:
        f.write("Datetime,Open,High,Low,Close,Volume\n")
        for _ in range(n):
            o = max(c + rnd(11) - 5, 1000)
            drift = -2 if o > 13000 else (2 if o < 7000 else 0)
            c = max(o + rnd(21) - 10 + drift, 1000)
            h = max(o, c) + rnd(6)
            l = max(min(o, c) - rnd(6), 1)
            v = 500 + rnd(1500) if vary_volume else 1000
            f.write(f"{t:%Y-%m-%d %H:%M:%S},{o/100:.2f},{h/100:.2f},{l/100:.2f},{c/100:.2f},{v}\n")
            t += step
            if t.hour == 16:
                t = t.replace(hour=9, minute=30) + datetime.timedelta(days=1)
                while t.weekday() >= 5:
                    t += datetime.timedelta(days=1)

def main():
    args = sys.argv[1:]
    k = None
    if "--symbols" in args:
        i = args.index("--symbols")
        k = int(args[i + 1])
        del args[i:i + 2]
    n = int(args[0])
    out = args[1]
    seed = int(args[2]) if len(args) > 2 else 42
    if k is None:
        write(n, out, seed)
        return
    os.makedirs(out, exist_ok=True)
    for j in range(1, k + 1):
        write(n, os.path.join(out, f"S{j:02d}.csv"), seed + j, vary_volume=True)

if __name__ == "__main__":
    main()
