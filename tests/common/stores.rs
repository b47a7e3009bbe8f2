//! The cluster tests' PostgreSQL and Redis: the bench's throwaway servers
//! (`src/bench/stores.rs`), failing the test loudly when one cannot start, with the queries
//! the tests check stores by.

use super::store_servers as servers;

/// A PostgreSQL server of the test's own.
pub struct Postgres(servers::Postgres);

impl Postgres {
    pub fn start() -> Postgres {
        Postgres(
            servers::Postgres::start()
                .unwrap_or_else(|e| panic!("cannot start PostgreSQL for the cluster tests: {e}")),
        )
    }

    pub fn conninfo(&self) -> String {
        self.0.conninfo()
    }

    pub fn port(&self) -> u16 {
        self.0.port
    }

    /// Stops the server at once (as a crash would).
    pub fn halt(&self) {
        self.0.halt();
    }

    pub fn resume(&self) {
        self.0
            .resume()
            .unwrap_or_else(|e| panic!("cannot start PostgreSQL again: {e}"));
    }

    /// A client for the test's own queries.
    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.conninfo(), postgres::NoTls).expect("connect to PostgreSQL")
    }

    /// The first column of the first row of `sql`, as an integer.
    pub fn scalar(&self, sql: &str) -> i64 {
        self.client()
            .query_one(sql, &[])
            .map(|row| row.get(0))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

/// A Redis server of the test's own.
pub struct Redis(servers::Redis);

impl Redis {
    pub fn start() -> Redis {
        Redis(
            servers::Redis::start()
                .unwrap_or_else(|e| panic!("cannot start Redis for the cluster tests: {e}")),
        )
    }

    pub fn url(&self) -> String {
        self.0.url()
    }

    pub fn halt(&mut self) {
        self.0.halt();
    }

    pub fn resume(&mut self) {
        self.0
            .resume()
            .unwrap_or_else(|e| panic!("cannot start Redis again: {e}"));
    }

    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection())
            .expect("connect to Redis")
    }
}
