//! Building blocks shared by the windowed indicators: a fixed-size ring buffer and rolling
//! sums (mean, population and sample variance) that cost O(1) per update.

/// The last `capacity` values, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    buf: Vec<f64>,
    /// Index of the oldest value once the buffer is full; 0 before.
    head: usize,
    cap: usize,
}

impl Window {
    /// A window of `capacity` values (0 is treated as 1).
    pub fn new(capacity: usize) -> Self {
        let cap = capacity.max(1);
        Window {
            buf: Vec::with_capacity(cap),
            head: 0,
            cap,
        }
    }
    pub fn capacity(&self) -> usize {
        self.cap
    }
    pub fn len(&self) -> usize {
        self.buf.len()
    }
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    pub fn is_full(&self) -> bool {
        self.buf.len() == self.cap
    }
    /// Appends `x`; once full, returns the value that fell out.
    pub fn push(&mut self, x: f64) -> Option<f64> {
        if self.buf.len() < self.cap {
            self.buf.push(x);
            return None;
        }
        let slot = self.buf.get_mut(self.head)?;
        let old = std::mem::replace(slot, x);
        self.head = (self.head + 1) % self.cap;
        Some(old)
    }
    /// The oldest value held.
    pub fn oldest(&self) -> Option<f64> {
        self.buf.get(self.head).copied()
    }
    /// The values, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = f64> + '_ {
        let (newer, older) = self.buf.split_at(self.head.min(self.buf.len()));
        older.iter().chain(newer.iter()).copied()
    }
    pub fn clear(&mut self) {
        self.buf.clear();
        self.head = 0;
    }
}

/// Rolling sum and sum of squares over the last `n` values.
///
/// Sums are kept of `x - shift`, with `shift` near the data, so that `E[x²] - E[x]²` does not
/// cancel catastrophically for prices far from zero. Every `max(n, 1024)` updates the sums are
/// recomputed from the window (amortised O(1)) so rounding error cannot build up forever.
#[derive(Debug, Clone, PartialEq)]
pub struct RollingStats {
    win: Window,
    shift: f64,
    sum: f64,
    sum_sq: f64,
    since_resync: usize,
}

/// Variances below this fraction of the mean squared deviation from `shift` are rounding
/// noise of a constant window, and count as exactly zero.
const ZERO_VARIANCE_REL: f64 = 1e-12;

impl RollingStats {
    pub fn new(n: usize) -> Self {
        RollingStats {
            win: Window::new(n),
            shift: 0.0,
            sum: 0.0,
            sum_sq: 0.0,
            since_resync: 0,
        }
    }
    pub fn period(&self) -> usize {
        self.win.capacity()
    }
    pub fn len(&self) -> usize {
        self.win.len()
    }
    pub fn is_empty(&self) -> bool {
        self.win.is_empty()
    }
    pub fn is_full(&self) -> bool {
        self.win.is_full()
    }
    pub fn push(&mut self, x: f64) {
        if self.win.is_empty() {
            self.shift = x;
        }
        let d = x - self.shift;
        self.sum += d;
        self.sum_sq += d * d;
        if let Some(old) = self.win.push(x) {
            let o = old - self.shift;
            self.sum -= o;
            self.sum_sq -= o * o;
        }
        self.since_resync += 1;
        if self.since_resync >= self.win.capacity().max(1024) {
            self.resync();
        }
    }
    fn resync(&mut self) {
        self.since_resync = 0;
        let n = self.win.len() as f64;
        if n == 0.0 {
            return;
        }
        self.shift = self.win.iter().sum::<f64>() / n;
        let (mut s, mut s2) = (0.0, 0.0);
        for x in self.win.iter() {
            let d = x - self.shift;
            s += d;
            s2 += d * d;
        }
        self.sum = s;
        self.sum_sq = s2;
    }
    /// Mean of the values held (NaN when empty).
    pub fn mean(&self) -> f64 {
        self.shift + self.sum / self.win.len() as f64
    }
    /// Sum of squared deviations from the mean, snapped to 0 when it is rounding noise.
    fn sq_dev(&self) -> f64 {
        let n = self.win.len() as f64;
        let m2 = self.sum_sq - self.sum * self.sum / n;
        if m2 <= ZERO_VARIANCE_REL * self.sum_sq {
            0.0
        } else {
            m2
        }
    }
    /// Population variance (ddof 0).
    pub fn variance_pop(&self) -> f64 {
        self.sq_dev() / self.win.len() as f64
    }
    /// Sample variance (ddof 1); 0 with fewer than two values.
    pub fn variance_sample(&self) -> f64 {
        let n = self.win.len();
        if n < 2 {
            return 0.0;
        }
        self.sq_dev() / (n - 1) as f64
    }
    pub fn clear(&mut self) {
        self.win.clear();
        self.shift = 0.0;
        self.sum = 0.0;
        self.sum_sq = 0.0;
        self.since_resync = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_evicts_oldest_and_iterates_in_order() {
        let mut w = Window::new(3);
        assert_eq!(w.push(1.0), None);
        assert_eq!(w.push(2.0), None);
        assert_eq!(w.push(3.0), None);
        assert_eq!(w.oldest(), Some(1.0));
        assert_eq!(w.push(4.0), Some(1.0));
        assert_eq!(w.push(5.0), Some(2.0));
        assert_eq!(w.iter().collect::<Vec<_>>(), vec![3.0, 4.0, 5.0]);
        assert_eq!(w.oldest(), Some(3.0));
    }

    #[test]
    fn rolling_stats_by_hand() {
        let mut s = RollingStats::new(4);
        for x in [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0] {
            s.push(x);
        }
        // Last four: 5, 5, 7, 9 → mean 6.5, squared deviations 2.25+2.25+0.25+6.25 = 11.
        assert!((s.mean() - 6.5).abs() < 1e-12);
        assert!((s.variance_pop() - 11.0 / 4.0).abs() < 1e-12);
        assert!((s.variance_sample() - 11.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn constant_window_has_exactly_zero_variance() {
        let mut s = RollingStats::new(5);
        for x in [100.1, 250.7, 3.3, 77.7, 77.7, 77.7, 77.7, 77.7] {
            s.push(x);
        }
        assert_eq!(s.variance_pop(), 0.0);
    }

    #[test]
    fn resync_keeps_long_runs_exact() {
        let mut s = RollingStats::new(3);
        for i in 0..5000 {
            s.push(1e6 + (i % 7) as f64 * 0.01);
        }
        // 4997, 4998, 4999 → i % 7 = 6, 0, 1.
        let xs = [1e6 + 0.06, 1e6, 1e6 + 0.01];
        let m = xs.iter().sum::<f64>() / 3.0;
        let v = xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / 3.0;
        assert!((s.mean() - m).abs() < 1e-9);
        assert!((s.variance_pop() - v).abs() < 1e-9);
    }
}
