//! The whole request path without I/O (`proxy::dry_run`): arbitrary bytes as a request —
//! head, every header sluice reads, body — against a gateway with keys, a SigV4 key, JWTs, two
//! upstreams and a budget (`fuzz/request_path.toml`). It must return, never panic.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sluice::config::{build, parse_text, Overrides};
use sluice::state::live::Snapshot;
use sluice::state::{Commands, State};

static GATEWAY: OnceLock<Snapshot> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let gateway = GATEWAY.get_or_init(|| {
        let config = parse_text(include_str!("../request_path.toml"))
            .and_then(|file| build(file, &Overrides::default()))
            .expect("fuzz/request_path.toml is a valid config");
        let state = State::build(&config, Commands::Skip).expect("its files load");
        Snapshot::new(config, state)
    });
    let _ = sluice::proxy::dry_run::run(data, gateway);
});
