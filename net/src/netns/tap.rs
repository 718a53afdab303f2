//! The tap device: `/dev/net/tun` ioctls (Linux `Documentation/networking/tuntap.rst`).
//!
//! The tap is created in the network namespace of the thread that opens `/dev/net/tun` (the
//! device takes the namespace of the file's socket, fixed at open), so [`open`] must run on a
//! thread that has already entered the target namespace.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

/// The size of `struct virtio_net_hdr` (virtio 1.2, 5.1.6): what a tap opened with
/// `IFF_VNET_HDR` prepends to every frame until someone sets `TUNSETVNETHDRSZ`.
pub const DEFAULT_VNET_HEADER_SIZE: usize = 10;

/// Creates (or attaches to) the tap `name` in the calling thread's network namespace, with
/// `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`, and makes sure it is not persistent: it goes away with
/// the last descriptor. A tap of that name another process holds open fails with `EBUSY`.
pub fn open(name: &str) -> io::Result<OwnedFd> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/net/tun")?;
    let mut req = ifreq_named(name)?;
    // IFF_* fit in a c_short (the kernel's `ifr_flags`); the casts only narrow the type.
    req.ifr_ifru.ifru_flags =
        (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as libc::c_short;
    // SAFETY: `file` is an open /dev/net/tun descriptor and `req` a live, initialised `ifreq`
    // that TUNSETIFF reads (name, flags) and writes back (the name) within its size.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: TUNSETPERSIST takes its argument by value (an int, 0 = not persistent); the
    // descriptor is the tun file just attached to the tap.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETPERSIST, 0 as libc::c_ulong) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file.into())
}

/// The vnet header size the tap prepends to frames (`TUNGETVNETHDRSZ`).
pub fn vnet_header_size(tap: BorrowedFd<'_>) -> io::Result<usize> {
    let mut size: libc::c_int = 0;
    // SAFETY: TUNGETVNETHDRSZ writes one int through the pointer, which points at `size`.
    let rc = unsafe { libc::ioctl(tap.as_raw_fd(), libc::TUNGETVNETHDRSZ, &mut size) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    usize::try_from(size).map_err(|_| io::Error::other(format!("vnet header size {size}")))
}

fn ifreq_named(name: &str) -> io::Result<libc::ifreq> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.bytes().any(|b| b == 0 || b == b'/')
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a valid interface name"),
        ));
    }
    // SAFETY: `ifreq` is plain old data (arrays, integers, a union of such, a pointer); all
    // zeroes is a valid value for every field.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    Ok(req)
}

/// Lets the tap descriptor `fd` survive exec, for the VMM that inherits it (`--net fd=N`).
/// Meant for `pre_exec` in the forked child: it only calls fcntl(2), which is
/// async-signal-safe, and allocates nothing.
pub fn keep_open_across_exec(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_GETFD/F_SETFD on a descriptor number only read and set its flags; a closed
    // number fails with EBADF, which is returned.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close_on_exec(fd: RawFd) -> bool {
        // SAFETY: F_GETFD only reads the descriptor's flags.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        assert!(flags >= 0, "{}", io::Error::last_os_error());
        flags & libc::FD_CLOEXEC != 0
    }

    #[test]
    fn test_keep_open_across_exec_clears_close_on_exec_bad_fd_refused() {
        // std opens files close-on-exec.
        let file = std::fs::File::open("/dev/null").expect("open /dev/null");
        assert!(close_on_exec(file.as_raw_fd()));
        keep_open_across_exec(file.as_raw_fd()).expect("clear FD_CLOEXEC");
        assert!(!close_on_exec(file.as_raw_fd()));
        let error = keep_open_across_exec(-1).expect_err("no such descriptor");
        assert_eq!(error.raw_os_error(), Some(libc::EBADF));
    }

    #[test]
    fn test_ifreq_named_bad_names_refused() {
        for bad in ["", "a/b", "0123456789abcdef", "a\0b"] {
            assert_eq!(
                ifreq_named(bad).unwrap_err().kind(),
                io::ErrorKind::InvalidInput,
                "{bad:?}"
            );
        }
        let req = ifreq_named("tap0_zone").unwrap();
        assert_eq!(req.ifr_name[..9], b"tap0_zone".map(|b| b as libc::c_char));
        assert_eq!(req.ifr_name[9], 0);
    }
}
