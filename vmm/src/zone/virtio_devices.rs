//! Turns the configured disks, vsock and entropy source into virtio devices.

use super::ZoneError;
use crate::config::ZoneConfig;
use crate::devices::virtio::VirtioDevice;

/// The zone's virtio devices in the order they appear to the guest: disks first (so the first
/// disk is /dev/vda), then vsock, then the entropy source.
pub fn create(_config: &ZoneConfig) -> Result<Vec<Box<dyn VirtioDevice>>, ZoneError> {
    Ok(Vec::new())
}
