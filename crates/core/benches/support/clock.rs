//! The host's effective clock, printed beside a throughput figure so the figure can be read.
//!
//! This host is a shared 2-vCPU VM whose speed moves by up to 2x between seconds and
//! minutes, and every bars/s figure moves with it: at an effective 2.7-2.8 G cycles/s the
//! engine benchmark does about 21M bars/s, at 1.5 G about 12M, same binary. The probe times a
//! chain of dependent one-cycle additions, so it counts the cycles a core actually gave this
//! process per second (frequency and time-slicing together). It is a label, not a
//! correction: the clock moves during a benchmark too, between the probes around it, so
//! ns per bar × clock is not a stable cycles-per-bar figure (it read 96-161 over six runs of
//! the same benchmark).

use std::time::Instant;

/// Iterations of one probe: about 5 ms at 2 G/s.
const ITERS: u64 = 10_000_000;

/// Giga-cycles per second one core retired, the median of five short probes; `None` off
/// x86-64, where the one-cycle loop is not written.
pub fn effective_ghz() -> Option<f64> {
    let mut runs = [0.0f64; 5];
    for r in &mut runs {
        let t = Instant::now();
        chain(ITERS)?;
        *r = ITERS as f64 / t.elapsed().as_secs_f64() / 1e9;
    }
    runs.sort_by(f64::total_cmp);
    Some(runs[2])
}

/// `n` dependent additions: each `add` reads the register the previous one wrote, so each
/// takes one cycle however wide the core is (the counter's `dec`/`jnz` is a second chain of the
/// same length, run beside it).
#[cfg(target_arch = "x86_64")]
fn chain(n: u64) -> Option<u64> {
    let mut x: u64 = 0;
    // SAFETY: register arithmetic only; no memory, no stack, flags clobbered (asm's default).
    unsafe {
        std::arch::asm!(
            "2:",
            "add {x}, 1",
            "dec {n}",
            "jnz 2b",
            x = inout(reg) x,
            n = inout(reg) n.max(1) => _,
            options(nomem, nostack),
        );
    }
    Some(x)
}

#[cfg(not(target_arch = "x86_64"))]
fn chain(_n: u64) -> Option<u64> {
    None
}
