#!/usr/bin/env python3
"""Runs SMA(10)/SMA(30) crossover, long only, 100 shares, IB-fixed-style commission
(max($1, $0.005/share), capped at 1% of value: $1 a fill at these prices), next-open fills,
$1,000,000 cash, in one peer tool. Prints one JSON line: tool, bars, elapsed_s, bars_per_s,
fills, final_equity, peak_rss_mb. Open positions are marked at the last close, not closed.

usage: peers.py backtrader|backtesting|vectorbt CSV"""
import json, resource, sys, time

CASH = 1_000_000.0
QTY = 100

def ib_fixed(qty, price):
    q = abs(qty)
    return min(max(0.005 * q, 1.0), 0.01 * q * price)

def run_backtrader(path):
    import backtrader as bt
    class Comm(bt.CommInfoBase):
        params = (("stocklike", True), ("commtype", bt.CommInfoBase.COMM_FIXED))
        def _getcommission(self, size, price, pseudoexec):
            return ib_fixed(size, price)
    class Sma(bt.Strategy):
        def __init__(self):
            self.cross = bt.ind.CrossOver(bt.ind.SMA(period=10), bt.ind.SMA(period=30))
            self.fills = 0
        def notify_order(self, order):
            if order.status == order.Completed:
                self.fills += 1
        def next(self):
            if self.cross > 0 and not self.position:
                self.buy(size=QTY)
            elif self.cross < 0 and self.position:
                self.sell(size=QTY)
    t0 = time.perf_counter()
    cerebro = bt.Cerebro(stdstats=False)
    data = bt.feeds.GenericCSVData(dataname=path, dtformat="%Y-%m-%d %H:%M:%S",
        datetime=0, open=1, high=2, low=3, close=4, volume=5, openinterest=-1,
        timeframe=bt.TimeFrame.Minutes)
    cerebro.adddata(data)
    cerebro.addstrategy(Sma)
    cerebro.broker.setcash(CASH)
    cerebro.broker.addcommissioninfo(Comm())
    strat = cerebro.run()[0]
    el = time.perf_counter() - t0
    return len(data), el, strat.fills, cerebro.broker.getvalue()

def run_backtesting(path):
    import pandas as pd
    from backtesting import Backtest, Strategy
    from backtesting.lib import crossover
    t0 = time.perf_counter()
    df = pd.read_csv(path, parse_dates=["Datetime"], index_col="Datetime")
    def sma(v, n):
        return pd.Series(v).rolling(n).mean()
    class Sma(Strategy):
        def init(self):
            self.f = self.I(sma, self.data.Close, 10)
            self.s = self.I(sma, self.data.Close, 30)
        def next(self):
            if crossover(self.f, self.s) and not self.position:
                self.buy(size=QTY)
            elif crossover(self.s, self.f) and self.position:
                self.position.close()
    bt_ = Backtest(df, Sma, cash=CASH, commission=lambda size, price: ib_fixed(size, price),
                   trade_on_close=False, exclusive_orders=False)
    stats = bt_.run()
    el = time.perf_counter() - t0
    trades = stats["_trades"]
    fills = 2 * len(trades)
    # An open trade at the end is one more fill (entry).
    eq = float(stats["Equity Final [$]"])
    return len(df), el, fills, eq

def run_vectorbt(path):
    import pandas as pd
    import vectorbt as vbt
    t0 = time.perf_counter()
    df = pd.read_csv(path, parse_dates=["Datetime"], index_col="Datetime")
    f = df.Close.rolling(10).mean()
    s = df.Close.rolling(30).mean()
    d = (f - s)
    sign = d.apply(lambda v: 1 if v > 0 else (-1 if v < 0 else 0)).replace(0, pd.NA).ffill()
    prev = sign.shift(1)
    entries = (sign == 1) & (prev == -1)
    exits = (sign == -1) & (prev == 1)
    pf = vbt.Portfolio.from_signals(df.Close, entries.shift(1, fill_value=False).astype(bool),
        exits.shift(1, fill_value=False).astype(bool), price=df.Open, size=QTY,
        size_type="amount", fixed_fees=1.0, init_cash=CASH, accumulate=False, freq="1min")
    el = time.perf_counter() - t0
    fills = int(pf.orders.count())
    return len(df), el, fills, float(pf.final_value())

def main():
    tool, path = sys.argv[1], sys.argv[2]
    fn = {"backtrader": run_backtrader, "backtesting": run_backtesting, "vectorbt": run_vectorbt}[tool]
    bars, el, fills, eq = fn(path)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"tool": tool, "bars": bars, "elapsed_s": el, "bars_per_s": bars / el,
                      "fills": fills, "final_equity": round(eq, 2), "peak_rss_mb": rss}))

if __name__ == "__main__":
    main()
