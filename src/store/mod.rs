//! Records that leave the hot path: workers hand them to a writer thread over a bounded
//! channel and never wait on disk. Today that is the access log ([`access_log`]).

pub mod access_log;
