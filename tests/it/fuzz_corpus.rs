//! Replays the fuzz corpora through the fuzz targets' functions: every file of
//! `fuzz/corpus/TARGET` (kept small with `cargo fuzz cmin`) and of `fuzz/regressions/TARGET`
//! (inputs that once crashed), each given to the same function the fuzzer calls
//! (`fuzz/src/lib.rs`, included here). Seconds, on the stable toolchain, no fuzzing: a change
//! that breaks what the fuzzer once proved is caught by the normal suite. Fuzzing itself is
//! `cargo +nightly fuzz run TARGET` in fuzz/ (BENCHMARKS.md, "Fuzzing").

#[path = "../../fuzz/src/lib.rs"]
mod targets;

use std::path::Path;

/// Runs `f` over every input of `target`; at least `min` corpus files must be there.
fn replay(target: &str, min: usize, f: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut n = 0;
    for dir in ["corpus", "regressions"] {
        let dir = root.join(dir).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            assert!(
                dir.ends_with(format!("regressions/{target}")),
                "{} missing",
                dir.display()
            );
            continue;
        };
        let mut files: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        files.sort();
        for p in files {
            let data = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            // The file's name is in the panic message when an input fails.
            let name = p.display().to_string();
            if std::panic::catch_unwind(|| f(&data)).is_err() {
                panic!("{name} fails (run: cd fuzz && cargo +nightly fuzz run {target} {name})");
            }
            n += 1;
        }
    }
    assert!(n >= min, "{target}: {n} inputs, expected at least {min}");
}

#[test]
fn signal_corpus() {
    replay("signal", 10, targets::signal);
}

#[test]
fn sdp_corpus() {
    replay("sdp", 2, targets::sdp);
}

#[test]
fn turn_guard_corpus() {
    replay("turn_guard", 3, targets::turn_guard);
}

#[test]
fn bridge_corpus() {
    replay("bridge", 10, targets::bridge);
}

#[test]
fn file_grant_corpus() {
    replay("file_grant", 3, targets::file_grant);
}

#[test]
fn tokens_corpus() {
    replay("tokens", 3, targets::tokens);
}

/// str0m 0.25 panics on a client offer that gives one payload type to an audio and a video
/// codec (found by the `sdp` target; fuzz/known-crashes/sdp/). The fuzz target catches that
/// one panic (so it can look for others); the sfuserver does not yet (it calls
/// `accept_offer` on its media worker thread). This test fails once str0m no longer panics:
/// then drop `catching_known_str0m_panic` from the target and this test.
#[test]
fn str0m_still_panics_on_the_known_offers() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/known-crashes/sdp");
    let mut n = 0;
    for e in std::fs::read_dir(&dir)
        .expect("fuzz/known-crashes/sdp")
        .flatten()
    {
        let text = std::fs::read_to_string(e.path()).expect("utf-8 SDP");
        let offer = str0m::change::SdpOffer::from_sdp_string(&text).expect("it parses");
        let mut rtc = str0m::RtcConfig::new()
            .set_ice_lite(true)
            .build(std::time::Instant::now());
        let r = targets::catching_known_str0m_panic(|| rtc.sdp_api().accept_offer(offer));
        assert!(
            r.is_none(),
            "{}: str0m no longer panics",
            e.path().display()
        );
        n += 1;
    }
    assert!(n >= 1);
}
