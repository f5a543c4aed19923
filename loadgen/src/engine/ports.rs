//! Local port choice for outgoing connections.
//!
//! Left to the kernel (`connect()` on an unbound socket), the ephemeral port search costs
//! O(connections to the same destination) per connect: Linux tries the even ports of
//! `ip_local_port_range` first, checking each one's established connections, so once half the
//! range is in use every further connect walks all of it. Measured on this machine: 64% of
//! the loadgen's CPU in a ramp to 19,000 connections (`__inet_check_established` under
//! `__inet_hash_connect`), ~220 µs per connection.
//!
//! So each connection binds a port of its own choosing: connection `idx` on source address
//! `idx % A` gets port `lo + (base + idx / A) mod size` of the range (distinct within a run,
//! across worker processes too, since they share out the indices). If that port is taken
//! (`EADDRINUSE`: another program's socket, e.g. the broker's listener) the kernel chooses as
//! before. It skips explicitly bound ports but may pick the port of a connection not yet
//! opened; that socket does not set `SO_REUSEADDR`, so the later bind fails (and falls back)
//! instead of succeeding next to it and failing at connect with `EADDRNOTAVAIL`. A connect retry (`attempt`) starts from another port. `SO_REUSEADDR` lets a
//! port be bound again while an earlier run's connections on it are in TIME_WAIT (the 4-tuple
//! then differs when the broker listens on a new port each run; if it does not, connect fails
//! with `EADDRNOTAVAIL`, a resource error that is retried on another port).

use crate::error::ConnError;
use std::net::{Ipv4Addr, SocketAddr};
use tokio::net::TcpSocket;

#[derive(Debug, Clone)]
pub struct Ports {
    /// first port of the range
    lo: u16,
    /// ports in the range (0: disabled, the kernel chooses)
    size: u32,
    /// where this run starts in the range (spreads consecutive runs over it)
    base: u32,
    /// source addresses (1 when none is given)
    addrs: u32,
}

impl Ports {
    /// Ports from the system's ephemeral range (`/proc/sys/net/ipv4/ip_local_port_range`), or
    /// disabled if it cannot be read.
    pub fn from_system(addrs: usize, seed: u64) -> Ports {
        let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok().and_then(|s| {
            let mut it = s.split_whitespace().map(|x| x.parse::<u16>());
            match (it.next(), it.next()) {
                (Some(Ok(lo)), Some(Ok(hi))) if hi > lo => Some((lo, hi)),
                _ => None,
            }
        });
        match range {
            Some((lo, hi)) => Ports::new(lo, hi, addrs, seed),
            None => Ports::disabled(),
        }
    }

    pub fn new(lo: u16, hi: u16, addrs: usize, seed: u64) -> Ports {
        let size = (hi - lo) as u32 + 1;
        Ports { lo, size, base: (seed % size as u64) as u32, addrs: addrs.max(1) as u32 }
    }

    pub fn disabled() -> Ports {
        Ports { lo: 0, size: 0, base: 0, addrs: 1 }
    }

    /// The port of connection `idx` in connect attempt `attempt`.
    pub fn port(&self, idx: usize, attempt: u32) -> Option<u16> {
        if self.size == 0 {
            return None;
        }
        let seq = idx as u64 / self.addrs as u64;
        // a retry jumps by a large odd stride
        let off = self.base as u64 + seq + attempt as u64 * 7919;
        Some(self.lo + (off % self.size as u64) as u16)
    }

    /// Bind `sock` for connection `idx` (to `src` if given): a chosen port, or the kernel's.
    pub fn bind(&self, sock: &TcpSocket, src: Option<Ipv4Addr>, idx: usize, attempt: u32) -> Result<(), ConnError> {
        let ip = src.unwrap_or(Ipv4Addr::UNSPECIFIED);
        if let Some(port) = self.port(idx, attempt) {
            let _ = sock.set_reuseaddr(true);
            match sock.bind(SocketAddr::new(ip.into(), port)) {
                Ok(()) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EADDRINUSE) => {
                    // taken: the kernel's choice, without SO_REUSEADDR, so that the connection
                    // whose port the kernel may pick gets EADDRINUSE too (not a bind that
                    // succeeds and a connect that fails)
                    let _ = sock.set_reuseaddr(false);
                }
                Err(e) => return Err(ConnError::from_io(&e)),
            }
        }
        if src.is_some() {
            sock.bind(SocketAddr::new(ip.into(), 0)).map_err(|e| ConnError::from_io(&e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_get_distinct_ports_per_source_address() {
        let p = Ports::new(32768, 60999, 1, 12345);
        let mut seen = std::collections::HashSet::new();
        for idx in 0..28232 {
            let port = p.port(idx, 0).unwrap();
            assert!((32768..=60999).contains(&port));
            assert!(seen.insert(port), "port {port} twice");
        }
        // two source addresses: each has its own range, so indices 2k and 2k+1 share a port
        let p = Ports::new(1000, 1009, 2, 0);
        assert_eq!(p.port(4, 0), p.port(5, 0));
        assert_ne!(p.port(4, 0), p.port(6, 0));
        // a retry moves away
        assert_ne!(p.port(4, 1), p.port(4, 0));
        assert_eq!(Ports::disabled().port(1, 0), None);
    }

    #[tokio::test]
    async fn a_taken_port_is_left_to_the_kernel() {
        // hold port P, then ask for a connection whose first choice is P
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = held.local_addr().unwrap().port();
        let p = Ports::new(port, port + 1000, 1, 0);
        assert_eq!(p.port(0, 0), Some(port));
        let sock = TcpSocket::new_v4().unwrap();
        p.bind(&sock, Some(Ipv4Addr::LOCALHOST), 0, 0).unwrap();
        let got = sock.local_addr().unwrap();
        assert_ne!(got.port(), port);
        assert_eq!(got.ip(), std::net::IpAddr::from(Ipv4Addr::LOCALHOST));
    }
}
