//! `scripts/build-pgo` end to end, as an operator runs it (on the quicker `pgo-check` cargo
//! profile and a short training, so the suite stays short): it builds sluice instrumented,
//! trains it on the bench, checks the profile reached the request path, builds again with the
//! profile, lays the result out with BOLT after a second training, and the binary it leaves
//! serves a governed request — streamed and not — metered and priced like this build's. Its
//! check that the training reached the request path is also tested on its own.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    reason = "integration test: a failure is a failed test"
)]

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;

#[test]
fn the_profile_guided_build_trains_on_the_bench_and_serves() {
    // The training runs the bench, which compares against nginx: without it the comparison
    // this test looks for is never printed.
    assert!(
        ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .iter()
            .any(|p| std::path::Path::new(p).exists()),
        "nginx is not installed: the training's bench compares sluice with it (.ci/run installs \
         Debian's nginx)"
    );
    let dir = tempfile::tempdir().unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let out = std::process::Command::new("bash")
        .arg(format!("{root}/scripts/build-pgo"))
        .env("SLUICE_PGO_DIR", dir.path())
        .env("SLUICE_PGO_CARGO_PROFILE", "pgo-check")
        .env("SLUICE_PGO_TRAINING", "quick")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "build-pgo failed:\n{log}");
    for profile in ["sluice.profdata", "bolt/sluice.fdata"] {
        let path = dir.path().join(profile);
        assert!(
            std::fs::metadata(&path).unwrap().len() > 0,
            "no merged profile at {}",
            path.display()
        );
    }
    // The training ran each bench: each prints its comparison line.
    for bench_line in ["sluice / nginx throughput", "sluice/nginx: throughput"] {
        assert!(log.contains(bench_line), "no `{bench_line}` in:\n{log}");
    }

    let bin = dir.path().join("pgo-check/sluice");
    let image = std::fs::read(&bin).unwrap();
    assert!(
        image.windows(15).any(|w| w == b".note.bolt_info"),
        "{} was not laid out by BOLT",
        bin.display()
    );
    let mock = mock(&[]);
    let key = sluice::config::keys::hash_hex("sk-pgo");
    let config = format!("[[keys]]\nname = \"pgo\"\nsha256 = \"{key}\"\nteam = \"t\"\n");
    let gw = gateway_of(bin.to_str().unwrap(), &mock.url(), &config, &[], &[]);
    let auth = "x-api-key: sk-pgo\r\nx-mock-reply: three word answer\r\n";
    let plain = request(gw.addr, &messages_request(SMALL_BODY, auth));
    assert_eq!(
        plain.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&plain.body)
    );
    assert_eq!(plain.json()["usage"]["output_tokens"], 3);
    let streamed = request(gw.addr, &messages_request(STREAM_BODY, auth));
    assert_eq!(streamed.status, 200);
    assert!(String::from_utf8_lossy(&streamed.body).contains("event: message_stop"));
    let refused = request(
        gw.addr,
        &messages_request(SMALL_BODY, "x-api-key: sk-nope\r\n"),
    );
    assert_error(&refused, 401, "authentication_error");

    let records = gw.wait_records(3);
    let served: Vec<_> = records.iter().filter(|r| r["status"] == 200).collect();
    assert_eq!(served.len(), 2, "{records:?}");
    for r in served {
        assert_eq!(r["identity"], "key:pgo");
        assert_eq!(r["output_tokens"], 3);
        assert!(r["cost_usd"].as_f64().unwrap() > 0.0, "{r}");
    }
}

/// A stand-in `llvm-profdata` that lists `first` and then more uncounted blocks than a pipe
/// holds, so it is still writing when a check that stops at the first count stops reading
/// (with a real profile, whether it still is depends on timing).
fn listing_profdata(dir: &std::path::Path, first: &str) -> std::path::PathBuf {
    let tool = dir.join("llvm-profdata");
    let script = format!(
        "#!/usr/bin/env bash\necho '    Block counts: [{first}]'\n\
         for _ in $(seq 1 20000); do echo '    Block counts: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]'; done\n"
    );
    std::fs::write(&tool, script).unwrap();
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
    tool
}

fn profile_reaches(profdata: &std::path::Path) -> bool {
    let root = env!("CARGO_MANIFEST_DIR");
    std::process::Command::new("bash")
        .arg(format!("{root}/scripts/pgo-profile-reaches"))
        .arg(profdata)
        .arg("sluice.profdata")
        .status()
        .unwrap()
        .success()
}

/// The check that the training reached the request path reads the whole listing: a check that
/// stopped reading at the first count could leave the tool writing into a closed pipe, and its
/// failure failed the check on a profile that had the counts (a full training's did here).
#[test]
fn the_profile_check_finds_counts_in_a_listing_longer_than_a_pipe_holds() {
    let dir = tempfile::tempdir().unwrap();
    assert!(profile_reaches(&listing_profdata(
        dir.path(),
        "261539, 0, 3"
    )));
    assert!(!profile_reaches(&listing_profdata(dir.path(), "0, 0, 0")));
}
