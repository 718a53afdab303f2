//! [`Vsock`]: the virtio device (config space, features, activation and reset) around the
//! [`Muxer`] that does the work on a worker thread.

use std::io;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use super::muxer::Muxer;
use super::uds::{self, SocketFile};
use super::{VsockError, QUEUE_SIZE};
use crate::devices::virtio::worker::Worker;
use crate::devices::virtio::{
    read_config_bytes, ActivateError, Activation, VirtioDevice, TYPE_VSOCK, VIRTIO_F_VERSION_1,
};

/// `VIRTIO_VSOCK_F_STREAM` (virtio 1.2, section 5.10.3): stream sockets are supported.
const VIRTIO_VSOCK_F_STREAM: u64 = 1 << 0;
const QUEUE_SIZES: [u16; 3] = [QUEUE_SIZE; 3];
/// Lowest CID a guest may have (0-2 are reserved, section 5.10.4); `u32::MAX` is "any".
const MIN_GUEST_CID: u64 = 3;
const MAX_GUEST_CID: u64 = u32::MAX as u64 - 1;

/// A virtio-vsock device whose host side is the Unix socket at `uds_path`.
///
/// The socket is bound by [`Vsock::new`]. While the device is active a worker thread serves
/// it; [`VirtioDevice::reset`] stops the worker, closing every connection and the listener, and
/// binds a fresh listener for the next activation. Dropping the device removes the socket file.
#[derive(Debug)]
pub struct Vsock {
    guest_cid: u64,
    uds_path: PathBuf,
    listener: Option<UnixListener>,
    socket_file: Option<SocketFile>,
    worker: Option<Worker>,
}

impl Vsock {
    /// Creates the device for a guest with CID `guest_cid` (3..=0xfffffffe) and binds its
    /// Unix socket at `uds_path`. A stale socket file there is replaced; any other file, or a
    /// socket somebody listens on, is an error, as is a path that cannot be bound.
    pub fn new(guest_cid: u64, uds_path: impl Into<PathBuf>) -> Result<Self, VsockError> {
        if !(MIN_GUEST_CID..=MAX_GUEST_CID).contains(&guest_cid) {
            return Err(VsockError::CheckGuestCid(guest_cid));
        }
        let uds_path = uds_path.into();
        let (listener, file) = uds::bind_listener(&uds_path)?;
        Ok(Self {
            guest_cid,
            uds_path,
            listener: Some(listener),
            socket_file: Some(file),
            worker: None,
        })
    }

    pub fn guest_cid(&self) -> u64 {
        self.guest_cid
    }

    /// The socket host processes connect to.
    pub fn uds_path(&self) -> &Path {
        &self.uds_path
    }

    fn stop_worker(&mut self) -> bool {
        match self.worker.take() {
            Some(worker) => {
                worker.stop();
                true
            }
            None => false,
        }
    }

    fn remove_socket(&mut self) {
        self.listener = None;
        if let Some(file) = self.socket_file.take() {
            file.remove();
        }
    }

    fn take_listener(&mut self) -> Result<UnixListener, VsockError> {
        if let Some(listener) = self.listener.take() {
            return Ok(listener);
        }
        self.remove_socket();
        let (listener, file) = uds::bind_listener(&self.uds_path)?;
        self.socket_file = Some(file);
        Ok(listener)
    }
}

impl VirtioDevice for Vsock {
    fn device_type(&self) -> u32 {
        TYPE_VSOCK
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &QUEUE_SIZES
    }

    fn device_features(&self) -> u64 {
        VIRTIO_F_VERSION_1 | VIRTIO_VSOCK_F_STREAM
    }

    /// `struct virtio_vsock_config { le64 guest_cid; }` (section 5.10.4). Read-only.
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.guest_cid.to_le_bytes(), offset, data);
    }

    fn activate(&mut self, activation: Activation) -> Result<(), ActivateError> {
        let expected = QUEUE_SIZES.len();
        for actual in [activation.queues.len(), activation.queue_events.len()] {
            if actual != expected {
                return Err(ActivateError::QueueCount { expected, actual });
            }
        }
        if self.stop_worker() {
            // Activated twice without a reset: start over with fresh connections.
            self.remove_socket();
        }
        let listener = self
            .take_listener()
            .map_err(|e| ActivateError::Backend(io::Error::other(e)))?;
        let muxer = Muxer::new(
            self.guest_cid,
            self.uds_path.clone(),
            listener,
            activation.mem,
            activation.queues,
            activation.queue_events,
            activation.interrupt,
        )
        .map_err(|e| ActivateError::Backend(io::Error::other(e)))?;
        let worker = Worker::spawn("zone-vsock", move |stop| muxer.run(stop))
            .map_err(ActivateError::Worker)?;
        self.worker = Some(worker);
        Ok(())
    }

    fn reset(&mut self) {
        if !self.stop_worker() {
            return;
        }
        // The worker owned every connection and the listener; they are closed now.
        self.remove_socket();
        match uds::bind_listener(&self.uds_path) {
            Ok((listener, file)) => {
                self.listener = Some(listener);
                self.socket_file = Some(file);
            }
            Err(e) => {
                tracing::error!(error = %e, "vsock: cannot rebind after reset; will retry on activation");
            }
        }
    }
}

impl Drop for Vsock {
    fn drop(&mut self) {
        self.stop_worker();
        self.remove_socket();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::net::UnixStream;

    #[test]
    fn test_vsock_new_reserved_cid_fails() {
        let dir = tempfile::tempdir().expect("tempdir");
        for cid in [0, 1, 2, u64::from(u32::MAX), 1 << 40] {
            assert!(matches!(
                Vsock::new(cid, dir.path().join("v.sock")),
                Err(VsockError::CheckGuestCid(_))
            ));
        }
    }

    #[test]
    fn test_vsock_new_missing_parent_dir_fails() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = Vsock::new(3, dir.path().join("missing/v.sock")).expect_err("must fail");
        assert!(matches!(err, VsockError::BindListener { .. }));
        assert!(err.to_string().contains("missing/v.sock"));
    }

    #[test]
    fn test_vsock_new_regular_file_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("v.sock");
        fs::write(&path, b"data").expect("write");
        assert!(Vsock::new(3, &path).is_err());
        assert_eq!(fs::read(&path).expect("kept"), b"data");
    }

    #[test]
    fn test_vsock_drop_removes_socket_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("v.sock");
        let dev = Vsock::new(3, &path).expect("new");
        assert!(path.exists());
        drop(dev);
        assert!(!path.exists());
        assert!(UnixStream::connect(&path).is_err());
    }

    #[test]
    fn test_vsock_config_reads_guest_cid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dev = Vsock::new(0x1234_5678, dir.path().join("v.sock")).expect("new");
        let mut cfg = [0xffu8; 8];
        dev.read_config(0, &mut cfg);
        assert_eq!(u64::from_le_bytes(cfg), 0x1234_5678);
        let mut hi = [0xffu8; 4];
        dev.read_config(4, &mut hi);
        assert_eq!(hi, [0; 4]);
        assert_eq!(dev.device_type(), TYPE_VSOCK);
        assert_eq!(dev.queue_max_sizes(), &[256, 256, 256]);
        assert_ne!(dev.device_features() & VIRTIO_F_VERSION_1, 0);
    }

    #[test]
    fn test_vsock_reset_without_activation_keeps_listener() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("v.sock");
        let mut dev = Vsock::new(3, &path).expect("new");
        dev.reset();
        dev.reset();
        assert!(UnixStream::connect(&path).is_ok());
    }
}
