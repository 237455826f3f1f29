//! The core stays pure: its dependencies are a fixed allow-list (no tokio, no I/O crates), and its
//! sources never touch files, sockets, threads or the wall clock.

use std::path::Path;

const ALLOWED: [&str; 7] = [
    "compact_str",
    "rust_decimal",
    "rust_decimal_macros",
    "chrono",
    "chrono-tz",
    "serde",
    "thiserror",
];
const FORBIDDEN: [&str; 9] = [
    "std::fs",
    "std::net",
    "std::thread",
    "std::process",
    "std::io::stdin",
    "SystemTime::now",
    "Utc::now",
    "Local::now",
    "Instant::now",
];

#[test]
fn core_dependencies_are_pure() {
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    let mut in_deps = false;
    let mut seen = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
            continue;
        }
        if in_deps && !line.is_empty() && !line.starts_with('#') {
            let name = line
                .split(['=', '.', ' '])
                .next()
                .unwrap_or("")
                .trim()
                .to_string();
            assert!(
                ALLOWED.contains(&name.as_str()),
                "robo-core must not depend on `{name}`"
            );
            seen.push(name);
        }
    }
    assert!(
        seen.contains(&"rust_decimal".to_string()),
        "parsed no dependencies: {seen:?}"
    );
}

#[test]
fn core_sources_do_no_io() {
    fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    assert!(files.len() > 10);
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for bad in FORBIDDEN {
            assert!(!text.contains(bad), "{} uses {bad}", f.display());
        }
    }
}
