//! Performing a parsed virtio-blk request against the disk image.
//!
//! [`super::request::parse`] has checked the chain layout and that every data descriptor lies
//! in guest memory; what is left to check here is the sector range, which needs the disk.

use std::os::unix::fs::FileExt;

use vm_memory::{Address, Bytes, GuestAddress, GuestMemory};

use super::disk::DiskImage;
use super::request::{Request, RequestType, Segment};
use super::{BlockError, SECTOR_SIZE};

impl Request {
    /// Performs the request; returns how many data bytes were written into guest memory.
    /// `bounce` is the copy buffer; data moves through it in pieces of its length.
    pub(super) fn execute<M: GuestMemory>(
        &self,
        mem: &M,
        disk: &DiskImage,
        bounce: &mut [u8],
    ) -> Result<u32, BlockError> {
        let mut fallback = [0u8; SECTOR_SIZE as usize];
        let bounce = if bounce.is_empty() {
            &mut fallback[..]
        } else {
            bounce
        };
        match self.kind {
            RequestType::In => {
                let offset = self.checked_offset(disk)?;
                self.read_disk(mem, disk, offset, bounce)?;
                // parse() bounds data_len by MAX_REQUEST_BYTES, far below u32::MAX.
                u32::try_from(self.data_len).map_err(|_| BlockError::TooLarge)
            }
            RequestType::Out => {
                if disk.read_only() {
                    return Err(BlockError::ReadOnly);
                }
                let offset = self.checked_offset(disk)?;
                self.write_disk(mem, disk, offset, bounce)?;
                Ok(0)
            }
            RequestType::Flush => {
                if disk.read_only() {
                    return Err(BlockError::ReadOnly);
                }
                disk.file().sync_data().map_err(BlockError::Flush)?;
                Ok(0)
            }
            RequestType::GetId => self.write_id(mem, disk.id()),
            RequestType::Unsupported(raw) => Err(BlockError::Unsupported(raw)),
        }
    }

    /// The byte offset of the request, after checking it and its data fit on the disk.
    fn checked_offset(&self, disk: &DiskImage) -> Result<u64, BlockError> {
        let range = BlockError::SectorRange {
            sector: self.sector,
            len: self.data_len,
        };
        let offset = self.sector.checked_mul(SECTOR_SIZE);
        let end = offset.and_then(|o| o.checked_add(self.data_len));
        // The disk size was read from a file, so sectors * 512 cannot overflow.
        match (offset, end) {
            (Some(offset), Some(end)) if end <= disk.sectors() * SECTOR_SIZE => Ok(offset),
            _ => Err(range),
        }
    }

    fn read_disk<M: GuestMemory>(
        &self,
        mem: &M,
        disk: &DiskImage,
        mut offset: u64,
        bounce: &mut [u8],
    ) -> Result<(), BlockError> {
        for seg in &self.data {
            for_each_chunk(seg, bounce.len(), |addr, n| {
                let buf = &mut bounce[..n];
                disk.file()
                    .read_exact_at(buf, offset)
                    .map_err(BlockError::ReadDisk)?;
                mem.write_slice(buf, addr).map_err(BlockError::WriteGuest)?;
                offset += n as u64;
                Ok(())
            })?;
        }
        Ok(())
    }

    fn write_disk<M: GuestMemory>(
        &self,
        mem: &M,
        disk: &DiskImage,
        mut offset: u64,
        bounce: &mut [u8],
    ) -> Result<(), BlockError> {
        for seg in &self.data {
            for_each_chunk(seg, bounce.len(), |addr, n| {
                let buf = &mut bounce[..n];
                mem.read_slice(buf, addr).map_err(BlockError::ReadGuest)?;
                disk.file()
                    .write_all_at(buf, offset)
                    .map_err(BlockError::WriteDisk)?;
                offset += n as u64;
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Copies as much of `id` as fits into the data descriptors.
    fn write_id<M: GuestMemory>(&self, mem: &M, id: &[u8]) -> Result<u32, BlockError> {
        let mut rest = id;
        let mut written = 0u32;
        for seg in &self.data {
            if rest.is_empty() {
                break;
            }
            let n = rest.len().min(seg.len as usize);
            let (now, later) = rest.split_at(n);
            mem.write_slice(now, seg.addr)
                .map_err(BlockError::WriteGuest)?;
            // n <= id.len() == 20.
            written += n as u32;
            rest = later;
        }
        Ok(written)
    }
}

/// Calls `f(address, length)` for consecutive pieces of `seg` no longer than `chunk` bytes.
/// A `chunk` of 0 is treated as 1.
fn for_each_chunk(
    seg: &Segment,
    chunk: usize,
    mut f: impl FnMut(GuestAddress, usize) -> Result<(), BlockError>,
) -> Result<(), BlockError> {
    let total = seg.len as usize;
    let mut done = 0usize;
    while done < total {
        let n = (total - done).min(chunk.max(1));
        // parse() checked the whole segment lies in guest memory, so this cannot overflow.
        let addr = seg.addr.unchecked_add(done as u64);
        f(addr, n)?;
        done += n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_for_each_chunk_splits_segment_in_order() {
        let seg = Segment {
            addr: GuestAddress(0x1000),
            len: 10,
        };
        let mut seen = Vec::new();

        for_each_chunk(&seg, 4, |addr, n| {
            seen.push((addr.raw_value(), n));
            Ok(())
        })
        .expect("callback never fails");

        assert_eq!(seen, vec![(0x1000, 4), (0x1004, 4), (0x1008, 2)]);
    }
}
