//! Turning a guest's descriptor chain into a checked virtio-blk request.
//!
//! The chain layout we accept (section 5.2.6): one device-readable 16-byte header
//! (`le32 type, le32 reserved, le64 sector`), data descriptors, then one device-writable
//! status byte. Everything in it comes from the guest, so every field is checked before any
//! disk I/O happens.

use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_FLUSH,
    VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
};
use virtio_queue::desc::split::Descriptor;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemory, Permissions};

use super::{BlockError, MAX_REQUEST_BYTES, SECTOR_SIZE, SEG_MAX};

/// Length of the request header.
const HEADER_LEN: u32 = 16;
/// Header, data descriptors, status.
const MAX_DESCRIPTORS: usize = SEG_MAX as usize + 2;

/// What the driver asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RequestType {
    In,
    Out,
    Flush,
    GetId,
    Unsupported(u32),
}

impl RequestType {
    fn from_raw(raw: u32) -> Self {
        match raw {
            VIRTIO_BLK_T_IN => Self::In,
            VIRTIO_BLK_T_OUT => Self::Out,
            VIRTIO_BLK_T_FLUSH => Self::Flush,
            VIRTIO_BLK_T_GET_ID => Self::GetId,
            other => Self::Unsupported(other),
        }
    }
}

/// One data descriptor, already checked to lie in guest memory.
#[derive(Debug, Clone, Copy)]
pub(super) struct Segment {
    pub(super) addr: GuestAddress,
    pub(super) len: u32,
}

/// A request whose chain layout has been checked.
#[derive(Debug)]
pub(super) struct Request {
    pub(super) kind: RequestType,
    pub(super) sector: u64,
    pub(super) data: Vec<Segment>,
    /// Sum of the data descriptors' lengths, at most [`MAX_REQUEST_BYTES`].
    pub(super) data_len: u64,
    /// Where the status byte goes.
    pub(super) status: GuestAddress,
}

/// A chain that is not a valid request. `status` is where to report `IOERR`, when the chain
/// ends in a writable byte; without one the chain can only be returned unanswered.
#[derive(Debug)]
pub(super) struct Malformed {
    pub(super) status: Option<GuestAddress>,
    pub(super) error: BlockError,
}

/// Checks the layout of `chain` against guest memory `mem`.
pub(super) fn parse<M: GuestMemory>(
    mem: &M,
    chain: impl IntoIterator<Item = Descriptor>,
) -> Result<Request, Malformed> {
    // Keep only what a valid request can use, but walk to the end to find the status byte.
    // The walk is bounded: the chain iterator stops after one pass over its table.
    let mut descs = Vec::with_capacity(4);
    let mut count = 0usize;
    let mut last = None;
    for desc in chain {
        count += 1;
        if descs.len() < MAX_DESCRIPTORS {
            descs.push(desc);
        }
        last = Some(desc);
    }

    let status = last
        .filter(|d| d.is_write_only() && d.len() >= 1)
        .and_then(|d| d.addr().checked_add(u64::from(d.len()) - 1));
    let Some(status) = status else {
        return Err(Malformed {
            status: None,
            error: BlockError::StatusDescriptor,
        });
    };
    let fail = |error| Malformed {
        status: Some(status),
        error,
    };
    if count > MAX_DESCRIPTORS {
        return Err(fail(BlockError::TooLarge));
    }
    if last.map(|d| d.len()) != Some(1) {
        // The status must be a descriptor of its own; mixing it with data is not supported.
        return Err(fail(BlockError::StatusDescriptor));
    }
    let [header, data @ .., _status] = descs.as_slice() else {
        return Err(fail(BlockError::HeaderDescriptor));
    };
    if header.is_write_only() || header.len() != HEADER_LEN {
        return Err(fail(BlockError::HeaderDescriptor));
    }
    let mut raw = [0u8; HEADER_LEN as usize];
    mem.read_slice(&mut raw, header.addr())
        .map_err(|e| fail(BlockError::ReadHeader(e)))?;
    let [k0, k1, k2, k3, _, _, _, _, s0, s1, s2, s3, s4, s5, s6, s7] = raw;
    let kind = RequestType::from_raw(u32::from_le_bytes([k0, k1, k2, k3]));
    let sector = u64::from_le_bytes([s0, s1, s2, s3, s4, s5, s6, s7]);

    let mut segments = Vec::with_capacity(data.len());
    let mut data_len = 0u64;
    // Flush and unsupported requests carry no data we look at, so their descriptors are ignored.
    let wants = match kind {
        RequestType::In | RequestType::GetId => Some(Permissions::Write),
        RequestType::Out => Some(Permissions::Read),
        RequestType::Flush | RequestType::Unsupported(_) => None,
    };
    if let Some(access) = wants {
        for desc in data {
            let writable = desc.is_write_only();
            if writable != (access == Permissions::Write) {
                return Err(fail(BlockError::DataDirection));
            }
            let len = usize::try_from(desc.len()).map_err(|_| fail(BlockError::TooLarge))?;
            if !mem.check_range(desc.addr(), len, access) {
                return Err(fail(BlockError::DataAddress));
            }
            data_len += u64::from(desc.len());
            segments.push(Segment {
                addr: desc.addr(),
                len: desc.len(),
            });
        }
    }
    if data_len > MAX_REQUEST_BYTES {
        return Err(fail(BlockError::TooLarge));
    }
    // Not `is_multiple_of`: the workspace supports Rust 1.85.
    let partial_sector = data_len % SECTOR_SIZE;
    if matches!(kind, RequestType::In | RequestType::Out) && partial_sector != 0 {
        return Err(fail(BlockError::DataLength(data_len)));
    }
    Ok(Request {
        kind,
        sector,
        data: segments,
        data_len,
        status,
    })
}

/// The status byte reported for a failed request.
pub(super) fn status_for(error: &BlockError) -> u8 {
    let status = match error {
        BlockError::Unsupported(_) => VIRTIO_BLK_S_UNSUPP,
        _ => VIRTIO_BLK_S_IOERR,
    };
    // The status constants are 0..=2.
    status as u8
}

/// The status byte reported for a request that succeeded.
pub(super) const STATUS_OK: u8 = VIRTIO_BLK_S_OK as u8;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::virtio::block::testing::{header_bytes, memory};
    use virtio_bindings::bindings::virtio_ring::VRING_DESC_F_WRITE;
    use vm_memory::GuestMemoryMmap;

    const HEADER: u64 = 0x1000;
    const DATA: u64 = 0x2000;
    const STATUS: u64 = 0x8000;

    fn readable(addr: u64, len: u32) -> Descriptor {
        Descriptor::new(addr, len, 0, 0)
    }

    fn writable(addr: u64, len: u32) -> Descriptor {
        Descriptor::new(addr, len, VRING_DESC_F_WRITE as u16, 0)
    }

    fn header(mem: &GuestMemoryMmap<()>, kind: u32, sector: u64) -> Descriptor {
        mem.write_slice(&header_bytes(kind, sector), GuestAddress(HEADER))
            .expect("write header");
        readable(HEADER, HEADER_LEN)
    }

    fn parse_err(mem: &GuestMemoryMmap<()>, chain: Vec<Descriptor>) -> Malformed {
        parse(mem, chain).expect_err("chain is malformed")
    }

    #[test]
    fn test_parse_valid_read_collects_segments() {
        let mem = memory(0x10000);
        let chain = vec![
            header(&mem, VIRTIO_BLK_T_IN, 7),
            writable(DATA, 512),
            writable(DATA + 0x1000, 1024),
            writable(STATUS, 1),
        ];

        let req = parse(&mem, chain).expect("valid read");

        assert_eq!(req.kind, RequestType::In);
        assert_eq!(req.sector, 7);
        assert_eq!(req.data.len(), 2);
        assert_eq!(req.data_len, 1536);
        assert_eq!(req.status, GuestAddress(STATUS));
    }

    #[test]
    fn test_parse_empty_chain_has_no_status() {
        let mem = memory(0x10000);

        let err = parse_err(&mem, Vec::new());

        assert!(err.status.is_none());
        assert!(matches!(err.error, BlockError::StatusDescriptor));
    }

    #[test]
    fn test_parse_readable_last_descriptor_has_no_status() {
        let mem = memory(0x10000);
        let chain = vec![header(&mem, VIRTIO_BLK_T_OUT, 0), readable(DATA, 512)];

        let err = parse_err(&mem, chain);

        assert!(err.status.is_none());
    }

    #[test]
    fn test_parse_wide_status_fails_with_status_at_last_byte() {
        let mem = memory(0x10000);
        let chain = vec![header(&mem, VIRTIO_BLK_T_FLUSH, 0), writable(STATUS, 4)];

        let err = parse_err(&mem, chain);

        assert_eq!(err.status, Some(GuestAddress(STATUS + 3)));
        assert!(matches!(err.error, BlockError::StatusDescriptor));
    }

    #[test]
    fn test_parse_status_only_fails_with_header_descriptor() {
        let mem = memory(0x10000);

        let err = parse_err(&mem, vec![writable(STATUS, 1)]);

        assert_eq!(err.status, Some(GuestAddress(STATUS)));
        assert!(matches!(err.error, BlockError::HeaderDescriptor));
    }

    #[test]
    fn test_parse_writable_header_fails_with_header_descriptor() {
        let mem = memory(0x10000);
        let chain = vec![writable(HEADER, 16), writable(STATUS, 1)];

        let err = parse_err(&mem, chain);

        assert!(matches!(err.error, BlockError::HeaderDescriptor));
    }

    #[test]
    fn test_parse_header_outside_memory_fails_with_read_header() {
        let mem = memory(0x10000);
        let chain = vec![readable(0x10_0000, 16), writable(STATUS, 1)];

        let err = parse_err(&mem, chain);

        assert!(matches!(err.error, BlockError::ReadHeader(_)));
    }

    #[test]
    fn test_parse_too_many_descriptors_fails_with_too_large() {
        let mem = memory(0x10000);
        let mut chain = vec![header(&mem, VIRTIO_BLK_T_IN, 0)];
        chain.extend((0..=SEG_MAX).map(|_| writable(DATA, 512)));
        chain.push(writable(STATUS, 1));

        let err = parse_err(&mem, chain);

        assert_eq!(err.status, Some(GuestAddress(STATUS)));
        assert!(matches!(err.error, BlockError::TooLarge));
    }

    #[test]
    fn test_parse_too_many_bytes_fails_with_too_large() {
        let mem = memory(0x100_0000);
        let len = u32::try_from(MAX_REQUEST_BYTES + 512).expect("fits u32");
        let chain = vec![
            header(&mem, VIRTIO_BLK_T_IN, 0),
            writable(0x10_0000, len),
            writable(STATUS, 1),
        ];

        let err = parse_err(&mem, chain);

        assert!(matches!(err.error, BlockError::TooLarge));
    }

    #[test]
    fn test_parse_readable_data_for_read_fails_with_data_direction() {
        let mem = memory(0x10000);
        let chain = vec![
            header(&mem, VIRTIO_BLK_T_IN, 0),
            readable(DATA, 512),
            writable(STATUS, 1),
        ];

        let err = parse_err(&mem, chain);

        assert!(matches!(err.error, BlockError::DataDirection));
    }

    #[test]
    fn test_parse_data_outside_memory_fails_with_data_address() {
        let mem = memory(0x10000);
        let chain = vec![
            header(&mem, VIRTIO_BLK_T_OUT, 0),
            readable(0xfe00, 1024),
            writable(STATUS, 1),
        ];

        let err = parse_err(&mem, chain);

        assert!(matches!(err.error, BlockError::DataAddress));
    }

    #[test]
    fn test_parse_unaligned_length_fails_with_data_length() {
        let mem = memory(0x10000);
        let chain = vec![
            header(&mem, VIRTIO_BLK_T_OUT, 0),
            readable(DATA, 100),
            writable(STATUS, 1),
        ];

        let err = parse_err(&mem, chain);

        assert!(matches!(err.error, BlockError::DataLength(100)));
    }

    #[test]
    fn test_parse_unknown_type_is_unsupported() {
        let mem = memory(0x10000);
        let chain = vec![header(&mem, 11, 0), writable(STATUS, 1)];

        let req = parse(&mem, chain).expect("layout is valid");

        assert_eq!(req.kind, RequestType::Unsupported(11));
    }

    #[test]
    fn test_status_for_unsupported_is_unsupp_else_ioerr() {
        assert_eq!(
            status_for(&BlockError::Unsupported(11)),
            VIRTIO_BLK_S_UNSUPP as u8
        );
        assert_eq!(status_for(&BlockError::ReadOnly), VIRTIO_BLK_S_IOERR as u8);
    }
}
