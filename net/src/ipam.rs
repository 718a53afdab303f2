//! Address leases for the built-in bridge network, kept as files so that every `zonectl`
//! process on the host sees the same leases without a daemon.
//!
//! Layout: `<state_root>/.network/leases/<address>` holds the zone id that leased the address
//! (the scheme CNI's host-local plugin uses). Allocation takes an exclusive `flock` on
//! `<state_root>/.network/leases/.lock`, so concurrent `zonectl run`s never hand out one
//! address twice, and picks the lowest free address. The network address, the gateway
//! (network + 1) and the broadcast address are never leased.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use nix::fcntl::{Flock, FlockArg};

/// Folder under the state root holding the bridge network's state.
pub const NETWORK_DIR: &str = ".network";

#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error("{0:?}: expected an IPv4 subnet such as 10.213.0.0/16 with a prefix of at most /30")]
    Subnet(String),
    #[error("creating the lease folder {}", .0.display())]
    CreateDir(PathBuf, #[source] io::Error),
    #[error("locking {}", .0.display())]
    Lock(PathBuf, #[source] io::Error),
    #[error("reading the leases in {}", .0.display())]
    ReadLeases(PathBuf, #[source] io::Error),
    #[error("writing the lease {}", .0.display())]
    WriteLease(PathBuf, #[source] io::Error),
    #[error("removing the lease {}", .0.display())]
    RemoveLease(PathBuf, #[source] io::Error),
    #[error("zone {zone} already holds {address}: release it first")]
    AlreadyLeased { zone: String, address: Ipv4Addr },
    #[error("no free address in {0}: remove stopped zones (zonectl rm) to free some")]
    Exhausted(Ipv4Subnet),
}

/// An IPv4 network such as `10.213.0.0/16` (host bits zero, prefix at most /30 so that it
/// holds a gateway and at least one zone).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Subnet {
    network: Ipv4Addr,
    prefix: u8,
}

impl Ipv4Subnet {
    /// `None` if host bits are set or the prefix leaves no room for a gateway and a zone.
    pub fn new(network: Ipv4Addr, prefix: u8) -> Option<Self> {
        if prefix > 30 {
            return None;
        }
        let subnet = Ipv4Subnet { network, prefix };
        (u32::from(network) & !subnet.mask() == 0).then_some(subnet)
    }

    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The first address after the network address; it goes on the bridge.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | !self.mask())
    }

    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & self.mask() == u32::from(self.network)
    }

    /// The addresses zones may get: after the gateway, before the broadcast address.
    fn leasable(&self) -> impl Iterator<Item = Ipv4Addr> {
        (u32::from(self.gateway()) + 1..u32::from(self.broadcast())).map(Ipv4Addr::from)
    }

    fn mask(&self) -> u32 {
        u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0)
    }
}

impl fmt::Display for Ipv4Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl FromStr for Ipv4Subnet {
    type Err = IpamError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || IpamError::Subnet(s.to_string());
        let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        Ipv4Subnet::new(addr, prefix).ok_or_else(bad)
    }
}

/// The leases of one subnet under one state root.
#[derive(Debug, Clone)]
pub struct Ipam {
    dir: PathBuf,
    subnet: Ipv4Subnet,
}

impl Ipam {
    pub fn new(state_root: &Path, subnet: Ipv4Subnet) -> Self {
        Ipam {
            dir: leases_dir(state_root),
            subnet,
        }
    }

    pub fn subnet(&self) -> Ipv4Subnet {
        self.subnet
    }

    /// Leases the lowest free address to `zone_id`. A zone holds at most one lease.
    pub fn allocate(&self, zone_id: &str) -> Result<Ipv4Addr, IpamError> {
        let _lock = self.lock()?;
        let leases = self.leases()?;
        if let Some((address, _)) = leases.iter().find(|(_, zone)| zone == zone_id) {
            return Err(IpamError::AlreadyLeased {
                zone: zone_id.to_string(),
                address: *address,
            });
        }
        let address = self
            .subnet
            .leasable()
            .find(|candidate| !leases.iter().any(|(taken, _)| taken == candidate))
            .ok_or(IpamError::Exhausted(self.subnet))?;
        let path = self.dir.join(address.to_string());
        let write = || -> io::Result<()> {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)?;
            file.write_all(zone_id.as_bytes())?;
            file.sync_all()
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&path);
            return Err(IpamError::WriteLease(path, e));
        }
        Ok(address)
    }

    /// The address `zone_id` holds, if any.
    pub fn lease_of(&self, zone_id: &str) -> Result<Option<Ipv4Addr>, IpamError> {
        if !self.dir.exists() {
            return Ok(None);
        }
        let _lock = self.lock()?;
        Ok(self
            .leases()?
            .into_iter()
            .find_map(|(address, zone)| (zone == zone_id).then_some(address)))
    }

    /// Releases whatever `zone_id` holds; `Ok(None)` when it held nothing.
    pub fn release(&self, zone_id: &str) -> Result<Option<Ipv4Addr>, IpamError> {
        if !self.dir.exists() {
            return Ok(None);
        }
        let _lock = self.lock()?;
        let mut released = None;
        for (address, zone) in self.leases()? {
            if zone != zone_id {
                continue;
            }
            let path = self.dir.join(address.to_string());
            match fs::remove_file(&path) {
                Ok(()) => released = Some(address),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(IpamError::RemoveLease(path, e)),
            }
        }
        Ok(released)
    }

    fn lock(&self) -> Result<Flock<File>, IpamError> {
        fs::create_dir_all(&self.dir).map_err(|e| IpamError::CreateDir(self.dir.clone(), e))?;
        let path = self.dir.join(".lock");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| IpamError::Lock(path.clone(), e))?;
        Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, errno)| IpamError::Lock(path, errno.into()))
    }

    /// Every lease in the folder (any subnet), with the zone holding it.
    fn leases(&self) -> Result<Vec<(Ipv4Addr, String)>, IpamError> {
        let read_err = |e| IpamError::ReadLeases(self.dir.clone(), e);
        let mut leases = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(read_err)? {
            let entry = entry.map_err(read_err)?;
            let Some(address) = entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse::<Ipv4Addr>().ok())
            else {
                continue;
            };
            let zone = match fs::read_to_string(entry.path()) {
                Ok(zone) => zone,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(read_err(e)),
            };
            leases.push((address, zone.trim().to_string()));
        }
        Ok(leases)
    }
}

/// `<state_root>/.network/leases`.
pub fn leases_dir(state_root: &Path) -> PathBuf {
    state_root.join(NETWORK_DIR).join("leases")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subnet(s: &str) -> Ipv4Subnet {
        s.parse().unwrap()
    }

    #[test]
    fn test_subnet_parse_valid_gateway_and_broadcast() {
        let net = subnet("10.213.0.0/16");
        assert_eq!(net.gateway(), Ipv4Addr::new(10, 213, 0, 1));
        assert_eq!(net.broadcast(), Ipv4Addr::new(10, 213, 255, 255));
        assert!(net.contains(Ipv4Addr::new(10, 213, 7, 9)));
        assert!(!net.contains(Ipv4Addr::new(10, 214, 0, 1)));
        assert_eq!(net.to_string(), "10.213.0.0/16");
    }

    #[test]
    fn test_subnet_parse_invalid_refused() {
        for bad in [
            "10.213.0.1/16",
            "10.213.0.0/31",
            "10.213.0.0",
            "::/64",
            "x/8",
            "10.0.0.0/33",
        ] {
            assert!(bad.parse::<Ipv4Subnet>().is_err(), "{bad}");
        }
    }

    #[test]
    fn test_allocate_first_lease_after_gateway() {
        let root = tempfile::tempdir().unwrap();
        let ipam = Ipam::new(root.path(), subnet("10.213.0.0/16"));
        assert_eq!(ipam.allocate("a").unwrap(), Ipv4Addr::new(10, 213, 0, 2));
        assert_eq!(ipam.allocate("b").unwrap(), Ipv4Addr::new(10, 213, 0, 3));
        assert_eq!(
            fs::read_to_string(leases_dir(root.path()).join("10.213.0.3")).unwrap(),
            "b"
        );
    }

    #[test]
    fn test_allocate_after_release_reuses_lowest() {
        let root = tempfile::tempdir().unwrap();
        let ipam = Ipam::new(root.path(), subnet("10.213.0.0/16"));
        for zone in ["a", "b", "c"] {
            ipam.allocate(zone).unwrap();
        }
        assert_eq!(
            ipam.release("b").unwrap(),
            Some(Ipv4Addr::new(10, 213, 0, 3))
        );
        assert_eq!(ipam.lease_of("b").unwrap(), None);
        assert_eq!(ipam.allocate("d").unwrap(), Ipv4Addr::new(10, 213, 0, 3));
        assert_eq!(ipam.allocate("e").unwrap(), Ipv4Addr::new(10, 213, 0, 5));
    }

    #[test]
    fn test_release_twice_ok() {
        let root = tempfile::tempdir().unwrap();
        let ipam = Ipam::new(root.path(), subnet("10.213.0.0/16"));
        assert_eq!(ipam.release("never").unwrap(), None);
        ipam.allocate("a").unwrap();
        assert!(ipam.release("a").unwrap().is_some());
        assert_eq!(ipam.release("a").unwrap(), None);
    }

    #[test]
    fn test_allocate_same_zone_twice_refused() {
        let root = tempfile::tempdir().unwrap();
        let ipam = Ipam::new(root.path(), subnet("10.213.0.0/16"));
        ipam.allocate("a").unwrap();
        let err = ipam.allocate("a").unwrap_err();
        assert!(matches!(err, IpamError::AlreadyLeased { .. }), "{err}");
    }

    #[test]
    fn test_allocate_tiny_subnet_exhausted() {
        let root = tempfile::tempdir().unwrap();
        // /30: network .0, gateway .1, one zone .2, broadcast .3.
        let ipam = Ipam::new(root.path(), subnet("10.99.0.0/30"));
        assert_eq!(ipam.allocate("a").unwrap(), Ipv4Addr::new(10, 99, 0, 2));
        let err = ipam.allocate("b").unwrap_err();
        assert_eq!(
            err.to_string().split(':').next().unwrap(),
            "no free address in 10.99.0.0/30"
        );
        ipam.release("a").unwrap();
        assert_eq!(ipam.allocate("b").unwrap(), Ipv4Addr::new(10, 99, 0, 2));
    }

    #[test]
    fn test_allocate_concurrent_threads_never_collide() {
        let root = tempfile::tempdir().unwrap();
        let net = subnet("10.213.0.0/24");
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let ipam = Ipam::new(root.path(), net);
                std::thread::spawn(move || {
                    (0..25)
                        .map(|i| ipam.allocate(&format!("z{t}-{i}")).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<Ipv4Addr> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 200);
        assert!(all.iter().all(|a| net.contains(*a) && *a != net.gateway()));
        // 200 of the 253 leasable addresses: exactly the lowest ones.
        assert_eq!(all.first(), Some(&Ipv4Addr::new(10, 213, 0, 2)));
        assert_eq!(all.last(), Some(&Ipv4Addr::new(10, 213, 0, 201)));
    }
}
