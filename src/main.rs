//! The `sluice` binary: parses the command line and runs one command.

use std::io::Read;
use std::process::ExitCode;

mod allocator;
mod bench;
mod cli;
mod mock;
mod spend_format;

use clap::Parser;
use cli::{AuditCommand, Cli, Command, KeysCommand, ServeArgs};
use sluice::config::{self, Overrides};

fn main() -> ExitCode {
    allocator::give_back_emptied_pages();
    sluice::runtime::huge_pages::disable();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::CheckConfig { file } => check_config(&file),
        Command::Models { config } => print_models(&config),
        Command::Keys(KeysCommand::Hash) => hash_key(),
        Command::Keys(command) => manage_keys(command),
        Command::Audit(AuditCommand::Verify { files }) => verify_audit(&files),
        Command::Spend {
            db,
            config,
            by,
            format,
        } => spend(db, config, &by, format),
        Command::MockUpstream(args) => {
            init_logging("info");
            report(mock::run(&args))
        }
        Command::Bench(args) => {
            init_logging("warn");
            report(bench::run(&args))
        }
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let file = match &args.config {
        Some(path) => config::load_file(path),
        None => Ok(Default::default()),
    };
    let overrides = Overrides {
        listen: args.listen,
        upstream: args.upstream,
        upstream_api_key: args.upstream_api_key,
        workers: args.workers,
        io_driver: args.io_driver,
    };
    let file = match file {
        Ok(f) => f,
        Err(e) => {
            eprintln!("sluice: config error: {e}");
            return ExitCode::from(2);
        }
    };
    // Before the config is built: building it reads the stored policies, and a cluster node
    // says there when it starts on its last copy of them.
    init_logging(&file.log.level);
    let config = match sluice::server::reload::build_config(file.clone(), &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sluice: config error: {e}");
            return ExitCode::from(2);
        }
    };
    let state = match sluice::state::State::build(&config, sluice::state::Commands::Run) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sluice: config error: {e}");
            return ExitCode::from(2);
        }
    };
    let source = sluice::server::ConfigSource {
        path: args.config.clone(),
        overrides,
        file,
    };
    report(sluice::server::serve(config, state, source))
}

/// Builds the config and loads every file it names (certificates, CA and key files, JWT keys;
/// no credential command runs), then reports what it found.
fn check_config(file: &std::path::Path) -> ExitCode {
    use sluice::state::{Commands, State};
    let built = config::load_file(file)
        .and_then(|f| config::build(f, &Overrides::default()))
        .map_err(|e| e.to_string())
        .and_then(|c| match State::build(&c, Commands::Skip) {
            Ok(state) => Ok((c, state)),
            Err(e) => Err(e.to_string()),
        });
    match built {
        Ok((c, state)) => {
            eprintln!(
                "{}: ok ({} upstreams, {} routes, {} keys, {} models)",
                file.display(),
                c.upstreams.len(),
                c.routes.len(),
                c.keys.len(),
                c.models.len()
            );
            for (place, model) in c.unpriced_routes() {
                eprintln!(
                    "warning: {place} serves `{model}`, which has no price: requests to it are refused under any budget (add a [[pricing]] entry for it, or a fallback price with model = \"*\")"
                );
            }
            if let Some(tls) = &state.edge_tls {
                report_certificates(tls);
            }
            if let Some(cluster) = &c.cluster {
                report_overshoot(cluster, &c.policies);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            ExitCode::from(2)
        }
    }
}

/// `sluice models`: one line per route, model and deployment with the id sent upstream.
fn print_models(file: &std::path::Path) -> ExitCode {
    let config = match config::load_file(file).and_then(|f| config::build(f, &Overrides::default()))
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    let rows = config::routes::model_mappings(&config);
    let width = |f: fn(&config::routes::ModelMapping) -> usize, title: &str| {
        rows.iter().map(f).max().unwrap_or(0).max(title.len())
    };
    let (w_route, w_model, w_upstream) = (
        width(|r| r.route.len(), "ROUTE"),
        width(|r| r.model.len(), "MODEL"),
        width(|r| r.upstream.len(), "UPSTREAM"),
    );
    let mut text = format!(
        "{:w_route$}  {:w_model$}  {:w_upstream$}  SENT UPSTREAM\n",
        "ROUTE", "MODEL", "UPSTREAM"
    );
    for r in &rows {
        let sent = match &r.sent {
            Ok(id) => id.clone(),
            Err(e) => format!("(refused: {e})"),
        };
        text.push_str(&format!(
            "{:w_route$}  {:w_model$}  {:w_upstream$}  {sent}\n",
            r.route, r.model, r.upstream
        ));
    }
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
    ExitCode::SUCCESS
}

/// How far each budget can be overspent across the cluster (`limits::lease::overshoot_bound`).
fn report_overshoot(
    cluster: &sluice::config::cluster::ClusterSettings,
    policies: &sluice::config::Policies,
) {
    let nodes = cluster.nodes;
    eprintln!(
        "cluster node {} of {nodes}: budgets are spent from leases on Redis (a slice covers {} of burn)",
        cluster.node_id,
        humantime::format_duration(cluster.lease_window)
    );
    for budget in &policies.budgets {
        let cap = budget.spec.limit_usd;
        let (per_crash, per_cut_off) = sluice::limits::lease::overshoot_bound(cap, nodes);
        let cut_off = match cluster.on_redis_failure {
            sluice::config::cluster::RedisFailure::StaticShare => format!(
                "each node cut off from Redis may add ${per_cut_off:.2} (all {nodes}: ${:.2})",
                per_cut_off * f64::from(nodes)
            ),
            sluice::config::cluster::RedisFailure::Refuse => {
                "a node cut off from Redis refuses once its leases expire".to_string()
            }
        };
        eprintln!(
            "budget {} {} (${cap:.2} {}): spend stays within the cap while Redis answers, \
             beyond it by at most ${per_crash:.2} per crashed node; {cut_off}",
            budget.scope.label(),
            budget.name,
            budget.spec.period.label(),
        );
    }
}

/// Each served certificate's names and expiry; a warning for one expiring within 14 days.
fn report_certificates(tls: &sluice::tls::EdgeTls) {
    let now = std::time::SystemTime::now();
    for cert in &tls.certificates {
        let days = cert.remaining(now).as_secs() / 86_400;
        eprintln!(
            "certificate {}: names {}, expires in {days} days",
            cert.cert_file,
            cert.names.join(", ")
        );
    }
    for cert in sluice::state::edge_tls::expiring_soon(tls, now) {
        eprintln!(
            "warning: certificate {} expires in less than 14 days: renew it (a reload picks up the new file)",
            cert.cert_file
        );
    }
}

fn hash_key() -> ExitCode {
    let mut key = String::new();
    if std::io::stdin().read_to_string(&mut key).is_err() {
        eprintln!("sluice: cannot read the key from standard input");
        return ExitCode::from(2);
    }
    let key = key.trim_end_matches(['\n', '\r']);
    if key.is_empty() {
        eprintln!("sluice: no key on standard input");
        return ExitCode::from(2);
    }
    let mut out = std::io::stdout().lock();
    let _ = std::io::Write::write_all(
        &mut out,
        format!("{}\n", config::keys::hash_hex(key)).as_bytes(),
    );
    ExitCode::SUCCESS
}

/// Where the key and spend commands read: `--config`'s store (its cluster's PostgreSQL, or its
/// `store.path`), else `--db`.
fn store_location(
    db: std::path::PathBuf,
    config: Option<&std::path::Path>,
) -> Result<sluice::store::keys::StoreLocation, String> {
    use sluice::store::keys::StoreLocation;
    let Some(file) = config else {
        return Ok(StoreLocation::Sqlite(db));
    };
    let built = config::load_file(file)
        .and_then(|f| config::build(f, &Overrides::default()))
        .map_err(|e| format!("{}: {e}", file.display()))?;
    StoreLocation::of(&built).ok_or_else(|| format!("{}: store.path is off", file.display()))
}

/// `sluice keys create|list|revoke|rotate`.
fn manage_keys(command: KeysCommand) -> ExitCode {
    use sluice::store::keys::NewKey;
    let open = |db, config: Option<std::path::PathBuf>| {
        store_location(db, config.as_deref())
            .and_then(|location| sluice::store::keys::open(&location).map_err(|e| e.to_string()))
    };
    let result = match command {
        KeysCommand::Hash => return hash_key(),
        KeysCommand::Create {
            db,
            config,
            name,
            user,
            team,
            models,
            expires,
        } => open(db, config).and_then(|mut store| {
            let key = NewKey {
                name,
                user,
                team,
                models,
                expires,
            };
            store
                .create(&key)
                .map(|text| format!("{text}\n"))
                .map_err(|e| e.to_string())
        }),
        KeysCommand::List { db, config } => open(db, config).and_then(|mut store| {
            store
                .list()
                .map(|rows| {
                    rows.iter()
                        .map(|r| format!("{}\n", serde_json::to_string(r).unwrap_or_default()))
                        .collect()
                })
                .map_err(|e| e.to_string())
        }),
        KeysCommand::Revoke { db, config, name } => open(db, config).and_then(|mut store| {
            store
                .revoke(&name)
                .map(|n| format!("revoked {n} key(s) named {name}\n"))
                .map_err(|e| e.to_string())
        }),
        KeysCommand::Rotate {
            db,
            config,
            name,
            grace,
        } => match humantime::parse_duration(&grace) {
            Ok(grace) => open(db, config).and_then(|mut store| {
                store
                    .rotate(&name, grace)
                    .map(|text| format!("{text}\n"))
                    .map_err(|e| e.to_string())
            }),
            Err(e) => {
                eprintln!("sluice: --grace `{grace}`: {e}");
                return ExitCode::from(2);
            }
        },
    };
    match result {
        Ok(text) => {
            let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sluice: {e}");
            ExitCode::from(2)
        }
    }
}

fn verify_audit(files: &[std::path::PathBuf]) -> ExitCode {
    match sluice::audit::verify(files) {
        Ok(lines) => {
            eprintln!(
                "audit chain intact: {lines} lines in {} file(s)",
                files.len()
            );
            ExitCode::SUCCESS
        }
        Err(b) => {
            eprintln!("audit chain broken at {}:{}: {}", b.file, b.line, b.problem);
            ExitCode::FAILURE
        }
    }
}

/// `sluice spend`: this node's ledger, or every node's spend in a cluster's PostgreSQL.
fn spend(
    db: std::path::PathBuf,
    config: Option<std::path::PathBuf>,
    by: &str,
    format: Option<spend_format::SpendFormat>,
) -> ExitCode {
    use sluice::store::keys::StoreLocation;
    let rows = store_location(db, config.as_deref()).and_then(|location| match location {
        StoreLocation::Sqlite(path) => sluice::store::ledger::spend(&path, by),
        StoreLocation::Postgres(conninfo) => sluice::store::postgres::connect(&conninfo)
            .map_err(|e| e.to_string())
            .and_then(|mut client| sluice::store::postgres::spend(&mut client, by)),
    });
    match rows {
        Ok(rows) => {
            use std::io::IsTerminal;
            let stdout = std::io::stdout();
            let format = format.unwrap_or(if stdout.is_terminal() {
                spend_format::SpendFormat::Table
            } else {
                spend_format::SpendFormat::Json
            });
            let _ = spend_format::write(&rows, format, &mut stdout.lock());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sluice: {e}");
            ExitCode::from(2)
        }
    }
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    // A log write that fails (stderr on a full disk) is dropped: reporting it would use
    // `eprintln!`, which panics when stderr cannot be written.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false)
        .try_init();
}

fn report<E: std::fmt::Display>(result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice: {e}");
            ExitCode::FAILURE
        }
    }
}
