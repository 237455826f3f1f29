//! Prints the host's effective clock in G cycles/s (see `benches/support/clock.rs`), for
//! `bench/run.sh` to take beside each timed run: `cargo run --release -p robo-core --example
//! clock`. Prints `-` where the probe does not exist (off x86-64).

#[path = "../benches/support/clock.rs"]
mod clock;

fn main() {
    match clock::effective_ghz() {
        Some(g) => println!("{g:.2}"),
        None => println!("-"),
    }
}
