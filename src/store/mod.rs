//! Records that leave the hot path: workers hand them to writer threads over bounded channels
//! and never wait on disk: the access log ([`access_log`]) and the spend ledger ([`ledger`]).

pub mod access_log;
pub mod keys;
pub mod ledger;
