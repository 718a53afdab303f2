//! Turns the configured disks, vsock, network device and entropy source into virtio devices.

use super::ZoneError;
use crate::config::{NetBackend, ZoneConfig, ZoneNet};
use crate::devices::virtio::block::{Block, BlockConfig};
use crate::devices::virtio::net::{Net, NetDeviceConfig, Tap};
use crate::devices::virtio::rng::Rng;
use crate::devices::virtio::vsock::Vsock;
use crate::devices::virtio::VirtioDevice;

/// The zone's virtio devices in the order the guest sees them: disks first (the first disk is
/// /dev/vda), then vsock, then the network device, then the entropy source.
pub fn create(config: &ZoneConfig) -> Result<Vec<Box<dyn VirtioDevice>>, ZoneError> {
    let mut devices: Vec<Box<dyn VirtioDevice>> = Vec::new();
    for disk in &config.disks {
        let block = Block::new(BlockConfig {
            path: disk.path.clone(),
            read_only: disk.read_only,
        })
        .map_err(|e| ZoneError::Device {
            what: format!("disk {}", disk.path.display()),
            source: Box::new(e),
        })?;
        devices.push(Box::new(block));
    }
    if let Some(vsock) = &config.vsock {
        let device =
            Vsock::new(vsock.guest_cid, vsock.socket.clone()).map_err(|e| ZoneError::Device {
                what: format!("vsock socket {}", vsock.socket.display()),
                source: Box::new(e),
            })?;
        devices.push(Box::new(device));
    }
    if let Some(net) = &config.net {
        devices.push(Box::new(net_device(net)?));
    }
    let rng = Rng::new().map_err(|e| ZoneError::Device {
        what: "entropy source".into(),
        source: Box::new(e),
    })?;
    devices.push(Box::new(rng));
    Ok(devices)
}

fn net_device(net: &ZoneNet) -> Result<Net, ZoneError> {
    let (tap, what) = match &net.backend {
        NetBackend::Tap(name) => (Tap::open(name), format!("net tap={name}")),
        NetBackend::Fd(fd) => (Tap::from_inherited_fd(*fd), format!("net fd={fd}")),
    };
    let tap = tap.map_err(|e| ZoneError::Device {
        what,
        source: Box::new(e),
    })?;
    tracing::info!(tap = tap.name(), mac = %net.mac, mtu = net.mtu, "virtio-net device");
    Ok(Net::new(
        tap,
        NetDeviceConfig {
            mac: net.mac.0,
            mtu: net.mtu,
        },
    ))
}
