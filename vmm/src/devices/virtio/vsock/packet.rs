//! The virtio-vsock packet header (virtio 1.2, section 5.10.6) and the moves of packets between
//! guest descriptor chains and host buffers.
//!
//! Everything here treats the chain as hostile: direction, addresses, lengths and the header
//! fields are checked before anything is acted on.

use virtio_queue::DescriptorChain;
use vm_memory::{Bytes, GuestAddress, GuestMemory, Permissions};

use super::VsockError;

/// The host's CID (`VMADDR_CID_HOST`, virtio 1.2 section 5.10.6).
pub const HOST_CID: u64 = 2;
/// Size of `struct virtio_vsock_hdr` (virtio 1.2, section 5.10.6).
pub const HDR_LEN: usize = 44;
/// `VIRTIO_VSOCK_TYPE_STREAM` (section 5.10.6).
pub const TYPE_STREAM: u16 = 1;

/// Operations (virtio 1.2, section 5.10.6, `enum virtio_vsock_op`).
pub const OP_REQUEST: u16 = 1;
pub const OP_RESPONSE: u16 = 2;
pub const OP_RST: u16 = 3;
pub const OP_SHUTDOWN: u16 = 4;
pub const OP_RW: u16 = 5;
pub const OP_CREDIT_UPDATE: u16 = 6;
pub const OP_CREDIT_REQUEST: u16 = 7;

/// `OP_SHUTDOWN` flags (section 5.10.6.5): the sender will receive / send no more data.
pub const SHUTDOWN_RCV: u32 = 1;
pub const SHUTDOWN_SEND: u32 = 2;
pub const SHUTDOWN_BOTH: u32 = SHUTDOWN_RCV | SHUTDOWN_SEND;

/// Largest payload we accept from or put into one packet (Linux uses 64 KiB too).
pub const MAX_PAYLOAD: usize = 64 * 1024;
/// Most descriptors we walk in one chain (Linux uses one or two).
const MAX_SEGMENTS: usize = 64;

/// `struct virtio_vsock_hdr`, decoded. All fields are little-endian on the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Header {
    pub src_cid: u64,
    pub dst_cid: u64,
    pub src_port: u32,
    pub dst_port: u32,
    pub len: u32,
    pub socket_type: u16,
    pub op: u16,
    pub flags: u32,
    pub buf_alloc: u32,
    pub fwd_cnt: u32,
}

impl Header {
    pub fn to_bytes(self) -> [u8; HDR_LEN] {
        let mut b = [0u8; HDR_LEN];
        b[0..8].copy_from_slice(&self.src_cid.to_le_bytes());
        b[8..16].copy_from_slice(&self.dst_cid.to_le_bytes());
        b[16..20].copy_from_slice(&self.src_port.to_le_bytes());
        b[20..24].copy_from_slice(&self.dst_port.to_le_bytes());
        b[24..28].copy_from_slice(&self.len.to_le_bytes());
        b[28..30].copy_from_slice(&self.socket_type.to_le_bytes());
        b[30..32].copy_from_slice(&self.op.to_le_bytes());
        b[32..36].copy_from_slice(&self.flags.to_le_bytes());
        b[36..40].copy_from_slice(&self.buf_alloc.to_le_bytes());
        b[40..44].copy_from_slice(&self.fwd_cnt.to_le_bytes());
        b
    }

    pub fn from_bytes(b: &[u8; HDR_LEN]) -> Self {
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(a)
        };
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        Self {
            src_cid: u64_at(0),
            dst_cid: u64_at(8),
            src_port: u32_at(16),
            dst_port: u32_at(20),
            len: u32_at(24),
            socket_type: u16_at(28),
            op: u16_at(30),
            flags: u32_at(32),
            buf_alloc: u32_at(36),
            fwd_cnt: u32_at(40),
        }
    }

    /// Checks a header the guest sent on the tx queue. The caller answers a wrong type or op
    /// with `OP_RST`; wrong CIDs and payload on a control op are dropped.
    pub fn validate_from_guest(&self, guest_cid: u64) -> Result<(), VsockError> {
        if self.src_cid != guest_cid {
            return Err(VsockError::CheckSrcCid(self.src_cid));
        }
        if self.dst_cid != HOST_CID {
            return Err(VsockError::CheckDstCid(self.dst_cid));
        }
        if self.socket_type != TYPE_STREAM {
            return Err(VsockError::CheckType(self.socket_type));
        }
        if !(OP_REQUEST..=OP_CREDIT_REQUEST).contains(&self.op) {
            return Err(VsockError::CheckOp(self.op));
        }
        if self.op != OP_RW && self.len != 0 {
            return Err(VsockError::CheckControlLen {
                op: self.op,
                len: self.len,
            });
        }
        Ok(())
    }
}

/// One guest buffer of a chain, already checked to lie in guest memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub addr: GuestAddress,
    pub len: usize,
}

/// Walks `chain`, requiring every descriptor to have the given direction and to lie in guest
/// memory. Fills `segs` (cleared first) and returns the total length.
pub fn collect_segments<M: GuestMemory>(
    mem: &M,
    chain: DescriptorChain<&M>,
    writable: bool,
    segs: &mut Vec<Segment>,
) -> Result<usize, VsockError> {
    segs.clear();
    let access = if writable {
        Permissions::Write
    } else {
        Permissions::Read
    };
    let mut total = 0usize;
    for desc in chain {
        if desc.is_write_only() != writable {
            return Err(VsockError::ChainDirection { writable });
        }
        let len = desc.len() as usize;
        if len == 0 {
            continue;
        }
        if segs.len() == MAX_SEGMENTS {
            return Err(VsockError::ChainTooLong(MAX_SEGMENTS));
        }
        if !mem.check_range(desc.addr(), len, access) {
            return Err(VsockError::ChainOutsideMemory {
                addr: desc.addr().0,
                len,
            });
        }
        segs.push(Segment {
            addr: desc.addr(),
            len,
        });
        total = total.saturating_add(len);
    }
    Ok(total)
}

/// Copies `buf.len()` bytes starting `offset` bytes into the chain's segments into `buf`.
pub fn gather<M: GuestMemory + ?Sized>(
    mem: &M,
    segs: &[Segment],
    mut offset: usize,
    buf: &mut [u8],
) -> Result<(), VsockError> {
    let mut done = 0;
    for seg in segs {
        if done == buf.len() {
            break;
        }
        if offset >= seg.len {
            offset -= seg.len;
            continue;
        }
        let n = (seg.len - offset).min(buf.len() - done);
        let addr = seg
            .addr
            .0
            .checked_add(offset as u64)
            .ok_or(VsockError::ChainOutsideMemory {
                addr: seg.addr.0,
                len: seg.len,
            })?;
        mem.read_slice(&mut buf[done..done + n], GuestAddress(addr))
            .map_err(VsockError::ReadGuestMemory)?;
        done += n;
        offset = 0;
    }
    if done != buf.len() {
        return Err(VsockError::ChainTooShort(done));
    }
    Ok(())
}

/// Copies `data` into the chain's segments, starting `offset` bytes in.
pub fn scatter<M: GuestMemory + ?Sized>(
    mem: &M,
    segs: &[Segment],
    mut offset: usize,
    data: &[u8],
) -> Result<(), VsockError> {
    let mut done = 0;
    for seg in segs {
        if done == data.len() {
            break;
        }
        if offset >= seg.len {
            offset -= seg.len;
            continue;
        }
        let n = (seg.len - offset).min(data.len() - done);
        let addr = seg
            .addr
            .0
            .checked_add(offset as u64)
            .ok_or(VsockError::ChainOutsideMemory {
                addr: seg.addr.0,
                len: seg.len,
            })?;
        mem.write_slice(&data[done..done + n], GuestAddress(addr))
            .map_err(VsockError::WriteGuestMemory)?;
        done += n;
        offset = 0;
    }
    if done != data.len() {
        return Err(VsockError::ChainTooShort(done));
    }
    Ok(())
}

/// Reads one packet the guest put on the tx queue: the header, then `len` payload bytes into
/// `data` (resized to fit). Checks the chain's shape and the length, not the header's meaning
/// (see [`Header::validate_from_guest`]).
pub fn read_tx_packet<M: GuestMemory>(
    mem: &M,
    chain: DescriptorChain<&M>,
    segs: &mut Vec<Segment>,
    data: &mut Vec<u8>,
) -> Result<Header, VsockError> {
    let total = collect_segments(mem, chain, false, segs)?;
    if total < HDR_LEN {
        return Err(VsockError::ChainTooShort(total));
    }
    let mut raw = [0u8; HDR_LEN];
    gather(mem, segs, 0, &mut raw)?;
    let hdr = Header::from_bytes(&raw);
    let len = hdr.len as usize;
    if len > MAX_PAYLOAD {
        return Err(VsockError::CheckPayloadLen(hdr.len));
    }
    if len > total - HDR_LEN {
        return Err(VsockError::CheckLenAgainstChain {
            len: hdr.len,
            available: total - HDR_LEN,
        });
    }
    data.clear();
    data.resize(len, 0);
    gather(mem, segs, HDR_LEN, data)?;
    Ok(hdr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use virtio_bindings::bindings::virtio_ring::VRING_DESC_F_WRITE;
    use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::GuestMemoryMmap;

    fn mem() -> GuestMemoryMmap<()> {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).expect("test memory")
    }

    fn sample() -> Header {
        Header {
            src_cid: 3,
            dst_cid: HOST_CID,
            src_port: 1234,
            dst_port: 52,
            len: 5,
            socket_type: TYPE_STREAM,
            op: OP_RW,
            flags: 0,
            buf_alloc: 4096,
            fwd_cnt: 17,
        }
    }

    fn desc(addr: u64, len: u32, flags: u16) -> RawDescriptor {
        RawDescriptor::from(SplitDescriptor::new(addr, len, flags, 0))
    }

    #[test]
    fn test_header_roundtrip_preserves_fields() {
        let h = sample();
        assert_eq!(Header::from_bytes(&h.to_bytes()), h);
        assert_eq!(&h.to_bytes()[24..28], &5u32.to_le_bytes());
    }

    #[test]
    fn test_header_validate_wrong_fields_rejected() {
        let h = sample();
        assert!(h.validate_from_guest(3).is_ok());
        assert!(matches!(
            h.validate_from_guest(4),
            Err(VsockError::CheckSrcCid(3))
        ));
        let bad = Header { dst_cid: 7, ..h };
        assert!(matches!(
            bad.validate_from_guest(3),
            Err(VsockError::CheckDstCid(7))
        ));
        let bad = Header {
            socket_type: 2,
            ..h
        };
        assert!(matches!(
            bad.validate_from_guest(3),
            Err(VsockError::CheckType(2))
        ));
        let bad = Header { op: 9, ..h };
        assert!(matches!(
            bad.validate_from_guest(3),
            Err(VsockError::CheckOp(9))
        ));
        let bad = Header {
            op: OP_REQUEST,
            ..h
        };
        assert!(matches!(
            bad.validate_from_guest(3),
            Err(VsockError::CheckControlLen { .. })
        ));
    }

    #[test]
    fn test_read_tx_packet_split_chain_reads_header_and_payload() {
        let m = mem();
        let q = MockSplitQueue::new(&m, 16);
        let h = sample();
        m.write_slice(&h.to_bytes(), GuestAddress(0x8000))
            .expect("write");
        m.write_slice(b"hello", GuestAddress(0x9000))
            .expect("write");
        let chain = q
            .build_desc_chain(&[desc(0x8000, 44, 0), desc(0x9000, 5, 0)])
            .expect("chain");
        let (mut segs, mut data) = (Vec::new(), Vec::new());
        let got = read_tx_packet(&m, chain, &mut segs, &mut data).expect("valid packet");
        assert_eq!(got, h);
        assert_eq!(data, b"hello");
    }

    #[test]
    fn test_read_tx_packet_short_chain_rejected() {
        let m = mem();
        let q = MockSplitQueue::new(&m, 16);
        let chain = q.build_desc_chain(&[desc(0x8000, 20, 0)]).expect("chain");
        let r = read_tx_packet(&m, chain, &mut Vec::new(), &mut Vec::new());
        assert!(matches!(r, Err(VsockError::ChainTooShort(20))));
    }

    #[test]
    fn test_read_tx_packet_len_beyond_chain_rejected() {
        let m = mem();
        let q = MockSplitQueue::new(&m, 16);
        let h = Header {
            len: 1000,
            ..sample()
        };
        m.write_slice(&h.to_bytes(), GuestAddress(0x8000))
            .expect("write");
        let chain = q.build_desc_chain(&[desc(0x8000, 100, 0)]).expect("chain");
        let r = read_tx_packet(&m, chain, &mut Vec::new(), &mut Vec::new());
        assert!(matches!(
            r,
            Err(VsockError::CheckLenAgainstChain {
                len: 1000,
                available: 56
            })
        ));
    }

    #[test]
    fn test_read_tx_packet_huge_len_rejected() {
        let m = mem();
        let q = MockSplitQueue::new(&m, 16);
        let h = Header {
            len: u32::MAX,
            ..sample()
        };
        m.write_slice(&h.to_bytes(), GuestAddress(0x8000))
            .expect("write");
        let chain = q.build_desc_chain(&[desc(0x8000, 100, 0)]).expect("chain");
        let r = read_tx_packet(&m, chain, &mut Vec::new(), &mut Vec::new());
        assert!(matches!(r, Err(VsockError::CheckPayloadLen(u32::MAX))));
    }

    #[test]
    fn test_collect_segments_wrong_direction_rejected() {
        let m = mem();
        let q = MockSplitQueue::new(&m, 16);
        let chain = q
            .build_desc_chain(&[desc(0x8000, 44, VRING_DESC_F_WRITE as u16)])
            .expect("chain");
        let r = read_tx_packet(&m, chain, &mut Vec::new(), &mut Vec::new());
        assert!(matches!(
            r,
            Err(VsockError::ChainDirection { writable: false })
        ));
    }

    #[test]
    fn test_collect_segments_outside_memory_rejected() {
        let m = mem();
        let q = MockSplitQueue::new(&m, 16);
        let chain = q
            .build_desc_chain(&[desc(0xF_FF00, 0x1000, VRING_DESC_F_WRITE as u16)])
            .expect("chain");
        let r = collect_segments(&m, chain, true, &mut Vec::new());
        assert!(matches!(r, Err(VsockError::ChainOutsideMemory { .. })));
    }

    #[test]
    fn test_scatter_across_segments_then_gather_matches() {
        let m = mem();
        let segs = [
            Segment {
                addr: GuestAddress(0x8000),
                len: 10,
            },
            Segment {
                addr: GuestAddress(0xA000),
                len: 100,
            },
        ];
        let data: Vec<u8> = (0..60).collect();
        scatter(&m, &segs, 4, &data).expect("fits");
        let mut back = vec![0u8; 60];
        gather(&m, &segs, 4, &mut back).expect("fits");
        assert_eq!(back, data);
        assert!(matches!(
            scatter(&m, &segs, 100, &data),
            Err(VsockError::ChainTooShort(10))
        ));
    }
}
