//! Helpers for the virtio device unit tests: guest memory, disks and driver-side chains.
//! The memory and chain helpers are used by the virtio-rng tests too.

use std::io::Write;

use virtio_bindings::bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::split::Descriptor;
use virtio_queue::desc::RawDescriptor;
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::devices::virtio::GuestMemory as GuestMem;

/// Guest memory of `len` bytes at address 0.
pub(in crate::devices::virtio) fn memory(len: usize) -> GuestMem {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), len)]).expect("create guest memory")
}

/// A disk of `sectors` sectors whose byte `i` is `i % 251`, so every sector differs.
pub(super) fn patterned_disk(sectors: usize) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("create temp file");
    let bytes: Vec<u8> = (0..sectors * 512).map(|i| (i % 251) as u8).collect();
    file.write_all(&bytes).expect("fill disk");
    file
}

/// A request header: `le32 type, le32 reserved, le64 sector`.
pub(super) fn header_bytes(kind: u32, sector: u64) -> [u8; 16] {
    let mut raw = [0u8; 16];
    raw[..4].copy_from_slice(&kind.to_le_bytes());
    raw[8..].copy_from_slice(&sector.to_le_bytes());
    raw
}

pub(in crate::devices::virtio) fn guest_bytes(mem: &GuestMem, addr: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    mem.read_slice(&mut buf, GuestAddress(addr))
        .expect("read guest memory");
    buf
}

/// Adds one chain of `(addr, len, device-writable)` at descriptor index `first`.
pub(in crate::devices::virtio) fn push_chain(
    vq: &MockSplitQueue<'_, GuestMem>,
    first: u16,
    descs: &[(u64, u32, bool)],
) {
    let raw: Vec<RawDescriptor> = descs
        .iter()
        .enumerate()
        .map(|(i, &(addr, len, writable))| {
            let index = first + i as u16;
            let mut flags = if writable { VRING_DESC_F_WRITE } else { 0 } as u16;
            if i + 1 < descs.len() {
                flags |= VRING_DESC_F_NEXT as u16;
            }
            RawDescriptor::from(Descriptor::new(addr, len, flags, index + 1))
        })
        .collect();
    vq.add_desc_chains(&raw, first).expect("add chain");
}

/// `(len, id)` of used ring entry `i`.
pub(in crate::devices::virtio) fn used(vq: &MockSplitQueue<'_, GuestMem>, i: usize) -> (u32, u32) {
    let elem = vq.used().ring().ref_at(i).expect("used entry").load();
    (elem.len(), elem.id())
}
