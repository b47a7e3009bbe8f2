//! Throwaway PostgreSQL and Redis servers, each in a temp directory on a free loopback port and
//! stopped when dropped: what `sluice bench --cluster` measures against, and what the cluster
//! tests start (they include this file). PostgreSQL refuses to run as root, so as root its
//! programs run as the `postgres` user (`runuser`).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Why a server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StoreServerError {
    #[error("PostgreSQL is not installed (apt-get install postgresql)")]
    NoPostgres,
    #[error("redis-server is not installed (apt-get install redis-server): {0}")]
    NoRedis(std::io::Error),
    #[error("{what}: {detail}")]
    Failed { what: &'static str, detail: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

fn failed(what: &'static str, detail: impl Into<String>) -> StoreServerError {
    StoreServerError::Failed {
        what,
        detail: detail.into(),
    }
}

/// A directory of one's own under the system's temp directory, removed when dropped.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn create(kind: &str) -> std::io::Result<ScratchDir> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("sluice-{kind}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(ScratchDir(dir))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A free loopback port (bound, read back, released).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// PostgreSQL's server programs (Debian keeps them under /usr/lib/postgresql/<version>/bin).
fn postgres_bin() -> Result<PathBuf, StoreServerError> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dir| {
            dir.filter_map(Result::ok)
                .map(|e| e.path().join("bin"))
                .filter(|bin| bin.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found.pop().ok_or(StoreServerError::NoPostgres)
}

/// A PostgreSQL server of one's own (trust authentication, user `sluice`, no fsync).
pub struct Postgres {
    pub port: u16,
    bin: PathBuf,
    data: PathBuf,
    as_postgres: bool,
    _dir: ScratchDir,
}

impl Postgres {
    pub fn start() -> Result<Postgres, StoreServerError> {
        let dir = ScratchDir::create("postgres")?;
        let as_postgres = is_root();
        if as_postgres {
            let handed = Command::new("chown")
                .args(["-R", "postgres"])
                .arg(dir.path())
                .status()?;
            if !handed.success() {
                return Err(failed("chown", "cannot hand the directory to postgres"));
            }
        }
        let pg = Postgres {
            port: free_port()?,
            bin: postgres_bin()?,
            data: dir.path().join("data"),
            as_postgres,
            _dir: dir,
        };
        let out = pg
            .command("initdb")
            .args([
                "-A",
                "trust",
                "-U",
                "sluice",
                "--no-sync",
                "-E",
                "UTF8",
                "-D",
            ])
            .arg(&pg.data)
            .output()?;
        if !out.status.success() {
            return Err(failed("initdb", String::from_utf8_lossy(&out.stderr)));
        }
        pg.resume()?;
        Ok(pg)
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    /// The connection string sluice is given.
    pub fn conninfo(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=sluice dbname=postgres",
            self.port
        )
    }

    /// Starts the server (again) and waits until it takes connections.
    pub fn resume(&self) -> Result<(), StoreServerError> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.data.parent().unwrap_or(Path::new("/tmp")).display()
        );
        let status = self
            .command("pg_ctl")
            .args(["-w", "-t", "60", "-l"])
            .arg(self.data.join("server.log"))
            .arg("-D")
            .arg(&self.data)
            .args(["-o", &options, "start"])
            .stdout(Stdio::null())
            .status()?;
        if !status.success() {
            let log = std::fs::read_to_string(self.data.join("server.log")).unwrap_or_default();
            return Err(failed("PostgreSQL did not start", log));
        }
        Ok(())
    }

    /// Stops the server at once (as a crash would).
    pub fn halt(&self) {
        let _ = self
            .command("pg_ctl")
            .args(["-m", "immediate", "-D"])
            .arg(&self.data)
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.halt();
    }
}

/// A Redis server of one's own (no persistence).
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
    dir: ScratchDir,
}

impl Redis {
    pub fn start() -> Result<Redis, StoreServerError> {
        let mut redis = Redis {
            port: free_port()?,
            child: None,
            dir: ScratchDir::create("redis")?,
        };
        redis.resume()?;
        Ok(redis)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts the server (again, empty) and waits until it answers.
    pub fn resume(&mut self) -> Result<(), StoreServerError> {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(StoreServerError::NoRedis)?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let answered = redis::Client::open(self.url())
                .and_then(|c| c.get_connection())
                .is_ok();
            if answered {
                return Ok(());
            }
            #[expect(clippy::disallowed_methods, reason = "waiting for a child server")]
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(failed("Redis did not start", format!("port {}", self.port)))
    }

    /// Stops the server at once.
    pub fn halt(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.halt();
    }
}
