#!/usr/bin/env python3
"""Generates the reference vectors for crates/core/tests/indicators.rs.

Not run by the tests: its output, `expected.csv`, is committed beside it. Re-run it only to
change the vectors:

    python3 -m venv /tmp/talib-venv
    /tmp/talib-venv/bin/pip install --only-binary=:all: TA-Lib numpy   # wheels bundle the C library
    /tmp/talib-venv/bin/python crates/core/tests/data/indicators/generate.py

Input: `ibm_300.csv`, the first 300 rows of the bokeh sample data IBM.csv (daily OHLCV,
2000-03-01 .. 2001-05-08), copied here so the vectors are deterministic.

Output: `expected.csv`, one row per input bar, one column per indicator output. An empty cell
means "not warm yet" (TA-Lib's NaN). Floats are written with `repr`, which round-trips exactly.

Sources of truth:
  * TA-Lib (the C library bundled in the `TA-Lib` 0.8.2 Python wheel), default compatibility,
    unstable period 0: SMA, EMA, RSI, MACD, BBANDS (matype SMA, population std dev), ATR, MAX/MIN
    (Donchian), ROC, OBV, and STDDEV (population) for the z-score.
  * numpy, for the indicators TA-Lib lacks:
      - z-score(n) = (x - SMA(n)) / STDDEV(n, 1), both from TA-Lib; 0.0 where the std dev is 0.
      - VWAP: cumulative typical price x volume / cumulative volume, typical = (H+L+C)/3,
        restarted every SESSION bars (the test calls `reset()` at the same bars).
      - historical volatility(n, ppy): sample std dev (ddof=1, two-pass numpy) of the last n
        log returns x sqrt(ppy).
"""

import csv
import math
import os

import numpy as np
import talib

HERE = os.path.dirname(os.path.abspath(__file__))
SESSION = 50  # VWAP session length in bars


def load():
    with open(os.path.join(HERE, "ibm_300.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    col = lambda k: np.array([float(r[k]) for r in rows], dtype=np.float64)
    return col("Open"), col("High"), col("Low"), col("Close"), col("Volume")


def zscore(x, n):
    mean = talib.SMA(x, n)
    std = talib.STDDEV(x, n, 1.0)
    z = np.full_like(x, np.nan)
    ok = ~np.isnan(std)
    z[ok] = np.where(std[ok] > 0.0, (x[ok] - mean[ok]) / np.where(std[ok] > 0.0, std[ok], 1.0), 0.0)
    return z


def vwap(h, l, c, v, session):
    out = np.full_like(c, np.nan)
    pv = 0.0
    vol = 0.0
    for i in range(len(c)):
        if i % session == 0:
            pv, vol = 0.0, 0.0
        pv += (h[i] + l[i] + c[i]) / 3.0 * v[i]
        vol += v[i]
        if vol > 0.0:
            out[i] = pv / vol
    return out


def hist_vol(c, n, ppy):
    r = np.log(c[1:] / c[:-1])
    out = np.full_like(c, np.nan)
    for i in range(n, len(c)):
        out[i] = np.std(r[i - n : i], ddof=1) * math.sqrt(ppy)
    return out


def main():
    _o, h, l, c, v = load()
    cols = {}
    for n in (10, 3):
        cols[f"sma_{n}"] = talib.SMA(c, n)
        cols[f"ema_{n}"] = talib.EMA(c, n)
    for n in (14, 2):
        cols[f"rsi_{n}"] = talib.RSI(c, n)
    for f, s, g in ((12, 26, 9), (3, 7, 4)):
        m, sig, hist = talib.MACD(c, f, s, g)
        cols[f"macd_{f}_{s}_{g}"] = m
        cols[f"macdsignal_{f}_{s}_{g}"] = sig
        cols[f"macdhist_{f}_{s}_{g}"] = hist
    for n, k in ((20, 2.0), (5, 1.5)):
        up, mid, lo = talib.BBANDS(c, n, k, k, 0)
        tag = f"{n}_{k}"
        cols[f"bbupper_{tag}"] = up
        cols[f"bbmiddle_{tag}"] = mid
        cols[f"bblower_{tag}"] = lo
    for n in (14, 3):
        cols[f"atr_{n}"] = talib.ATR(h, l, c, n)
    for n in (20, 5):
        cols[f"zscore_{n}"] = zscore(c, n)
    for n in (20, 5):
        up = talib.MAX(h, n)
        lo = talib.MIN(l, n)
        cols[f"donchupper_{n}"] = up
        cols[f"donchmiddle_{n}"] = (up + lo) / 2.0
        cols[f"donchlower_{n}"] = lo
    for n in (10, 1):
        cols[f"roc_{n}"] = talib.ROC(c, n)
    cols["obv"] = talib.OBV(c, v)
    cols[f"vwap_{SESSION}"] = vwap(h, l, c, v, SESSION)
    for n in (20, 5):
        cols[f"hv_{n}_252"] = hist_vol(c, n, 252)

    names = ["high", "low", "close", "volume"] + list(cols)
    series = [h, l, c, v] + list(cols.values())
    with open(os.path.join(HERE, "expected.csv"), "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(names)
        for i in range(len(c)):
            w.writerow(["" if np.isnan(s[i]) else repr(float(s[i])) for s in series])


if __name__ == "__main__":
    main()
