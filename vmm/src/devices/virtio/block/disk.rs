//! The raw image behind a virtio-blk device: opened once, sized once, then read and
//! written with positioned I/O so no file cursor is shared.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use super::{BlockError, SECTOR_SIZE};

/// Length of the `GET_ID` serial string (`VIRTIO_BLK_ID_BYTES`).
pub(super) const ID_BYTES: usize = 20;

/// An open disk image.
#[derive(Debug)]
pub(super) struct DiskImage {
    file: File,
    sectors: u64,
    read_only: bool,
    id: [u8; ID_BYTES],
}

impl DiskImage {
    /// Opens `path` (read-only when asked) and checks its size is a non-zero number of sectors.
    pub(super) fn open(path: &Path, read_only: bool) -> Result<Self, BlockError> {
        // Check the type before opening: opening a FIFO would block and a directory opens fine.
        let meta = std::fs::metadata(path).map_err(|source| BlockError::Stat {
            path: path.to_path_buf(),
            source,
        })?;
        let kind = meta.file_type();
        if !kind.is_file() && !kind.is_block_device() {
            return Err(BlockError::NotAFile {
                path: path.to_path_buf(),
            });
        }
        let file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)
            .map_err(|source| BlockError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        // Seeking to the end sizes block devices too, whose metadata length is 0.
        let size = (&file)
            .seek(SeekFrom::End(0))
            .map_err(|source| BlockError::Size {
                path: path.to_path_buf(),
                source,
            })?;
        if size == 0 {
            return Err(BlockError::Empty {
                path: path.to_path_buf(),
            });
        }
        if size % SECTOR_SIZE != 0 {
            return Err(BlockError::UnalignedSize {
                path: path.to_path_buf(),
                size,
            });
        }
        Ok(Self {
            file,
            sectors: size / SECTOR_SIZE,
            read_only,
            id: serial_from_path(path),
        })
    }

    pub(super) fn file(&self) -> &File {
        &self.file
    }

    /// Capacity in 512-byte sectors.
    pub(super) fn sectors(&self) -> u64 {
        self.sectors
    }

    pub(super) fn read_only(&self) -> bool {
        self.read_only
    }

    /// The serial reported by `GET_ID`: NUL-padded, no terminator when it fills all 20 bytes.
    pub(super) fn id(&self) -> &[u8; ID_BYTES] {
        &self.id
    }
}

/// The first 20 printable ASCII bytes of the file name.
fn serial_from_path(path: &Path) -> [u8; ID_BYTES] {
    let mut id = [0u8; ID_BYTES];
    let name = path.file_name().map(OsStrExt::as_bytes).unwrap_or_default();
    let printable = name.iter().copied().filter(u8::is_ascii_graphic);
    for (slot, byte) in id.iter_mut().zip(printable) {
        *slot = byte;
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn image_with_len(len: usize) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().expect("create temp file");
        file.write_all(&vec![0xa5; len]).expect("fill temp file");
        file
    }

    #[test]
    fn test_disk_open_missing_path_fails_with_stat() {
        let dir = tempfile::tempdir().expect("create temp dir");
        let path = dir.path().join("absent.img");

        let result = DiskImage::open(&path, false);

        assert!(matches!(result, Err(BlockError::Stat { .. })));
    }

    #[test]
    fn test_disk_open_directory_fails_with_not_a_file() {
        let dir = tempfile::tempdir().expect("create temp dir");

        let result = DiskImage::open(dir.path(), true);

        assert!(matches!(result, Err(BlockError::NotAFile { .. })));
    }

    #[test]
    fn test_disk_open_empty_file_fails_with_empty() {
        let file = image_with_len(0);

        let result = DiskImage::open(file.path(), false);

        assert!(matches!(result, Err(BlockError::Empty { .. })));
    }

    #[test]
    fn test_disk_open_unaligned_size_fails_with_size_in_message() {
        let file = image_with_len(1000);

        let result = DiskImage::open(file.path(), false);

        let err = result.expect_err("1000 bytes is not whole sectors");
        assert!(matches!(err, BlockError::UnalignedSize { size: 1000, .. }));
        assert!(err.to_string().contains("1000 bytes"));
    }

    #[test]
    fn test_disk_open_valid_image_counts_sectors() {
        let file = image_with_len(4096);

        let disk = DiskImage::open(file.path(), false).expect("open image");

        assert_eq!(disk.sectors(), 8);
        assert!(!disk.read_only());
    }

    #[test]
    fn test_disk_open_read_only_rejects_writes() {
        use std::os::unix::fs::FileExt;
        let file = image_with_len(512);

        let disk = DiskImage::open(file.path(), true).expect("open image");

        assert!(disk.read_only());
        assert!(disk.file().write_at(&[1], 0).is_err());
    }

    #[test]
    fn test_serial_from_path_long_name_truncated_to_20_bytes() {
        let id = serial_from_path(Path::new("/images/rootfs-ubuntu-24.04-amd64.img"));

        assert_eq!(&id, b"rootfs-ubuntu-24.04-");
    }

    #[test]
    fn test_serial_from_path_short_name_nul_padded() {
        let id = serial_from_path(Path::new("/images/a b.img"));

        assert_eq!(&id[..7], b"ab.img\0");
        assert!(id[6..].iter().all(|&b| b == 0));
    }
}
