//! The tap backend: `/dev/net/tun` and its ioctls (Linux `Documentation/networking/tuntap.rst`,
//! `include/uapi/linux/if_tun.h`). Every tap is used with `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`,
//! a 12-byte `virtio_net_hdr_v1` in front of each frame, and a non-blocking descriptor.

use std::ffi::c_int;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use vm_memory::VolatileSlice;

use super::{NetError, MAX_CHAIN_SEGMENTS, VNET_HDR_LEN};

/// What the device needs from a tap; tests put a fake in its place.
pub(super) trait TapIo: AsRawFd + Send + Sync + std::fmt::Debug {
    /// Reads one frame (with its header) into `buf`; `WouldBlock` when none is queued.
    fn read_frame(&self, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes one frame (with its header), gathered from `parts`.
    fn write_frame(&self, parts: &[VolatileSlice<'_, ()>]) -> io::Result<usize>;
    /// Which offloads (`TUN_F_*`) frames towards the guest may use.
    fn set_offload(&self, flags: u32) -> io::Result<()>;
}

const IFNAMSIZ: usize = 16;
const TUN_PATH: &str = "/dev/net/tun";
/// The flags every tap must have, as `TUNGETIFF` reports them. `IFF_NO_PI` cannot really be
/// checked: the kernel also sets that bit (as `IFF_NOFILTER`) whenever no socket filter is
/// attached, so a missing `IFF_NO_PI` shows only on a tap that has a filter.
const REQUIRED_FLAGS: [(c_int, &str); 3] = [
    (libc::IFF_TAP, "IFF_TAP (it is a layer-3 tun)"),
    (libc::IFF_VNET_HDR, "IFF_VNET_HDR"),
    (libc::IFF_NO_PI, "IFF_NO_PI"),
];

/// `struct ifreq` as `TUNSETIFF`/`TUNGETIFF` use it: a name and `ifr_flags`, padded to the
/// size of the kernel's union (24 bytes on 64-bit).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct IfReqFlags {
    name: [u8; IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

impl IfReqFlags {
    fn new(name: &str, flags: c_int) -> Option<Self> {
        let mut req = Self {
            name: [0; IFNAMSIZ],
            // The IFF_* flags used here all fit in 16 bits; ifr_flags is a short.
            flags: flags as libc::c_short,
            _pad: [0; 22],
        };
        let bytes = name.as_bytes();
        if bytes.is_empty() || bytes.len() >= IFNAMSIZ || bytes.contains(&0) {
            return None;
        }
        req.name[..bytes.len()].copy_from_slice(bytes);
        Some(req)
    }

    fn name(&self) -> String {
        let end = self.name.iter().position(|&b| b == 0).unwrap_or(IFNAMSIZ);
        String::from_utf8_lossy(&self.name[..end]).into_owned()
    }
}

/// An attached tap queue.
#[derive(Debug)]
pub struct Tap {
    fd: OwnedFd,
    name: String,
}

impl Tap {
    /// Attaches to tap `name` in this process's network namespace, creating it if missing.
    pub fn open(name: &str) -> Result<Self, NetError> {
        let mut req = IfReqFlags::new(name, libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR)
            .ok_or_else(|| NetError::TapName(name.to_string()))?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(TUN_PATH)
            .map_err(NetError::OpenTun)?;
        // SAFETY: TUNSETIFF reads and writes one `struct ifreq`; `req` is a live, writable
        // value with that layout and size, and `file` is an open /dev/net/tun descriptor.
        let ret = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req) };
        if ret < 0 {
            return Err(NetError::AttachTap {
                name: name.to_string(),
                source: io::Error::last_os_error(),
            });
        }
        let tap = Self {
            fd: OwnedFd::from(file),
            name: req.name(),
        };
        tap.set_vnet_hdr_len()?;
        Ok(tap)
    }

    /// Takes over tap descriptor `fd` inherited from the parent. The descriptor must be
    /// attached to a tap interface with `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR` (`TUNGETIFF`
    /// checks `IFF_TAP` and `IFF_VNET_HDR`; see [`REQUIRED_FLAGS`] on `IFF_NO_PI`). The VMM works
    /// on a close-on-exec duplicate, marks `fd` itself close-on-exec (no child inherits it),
    /// makes the shared open file non-blocking and sets its header size to 12 bytes.
    pub fn from_inherited_fd(fd: RawFd) -> Result<Self, NetError> {
        // SAFETY: F_DUPFD_CLOEXEC only reads its integer arguments; an invalid `fd` fails
        // with EBADF and touches nothing.
        let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
        if dup < 0 {
            return Err(NetError::InheritedFd {
                fd,
                source: io::Error::last_os_error(),
            });
        }
        // SAFETY: `dup` was just returned by fcntl, so it is open and owned by nobody else.
        let owned = unsafe { OwnedFd::from_raw_fd(dup) };
        // SAFETY: F_SETFD with an integer argument on a descriptor we just duplicated (so
        // open); it changes only the descriptor flag of `fd`.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        let mut req = IfReqFlags {
            name: [0; IFNAMSIZ],
            flags: 0,
            _pad: [0; 22],
        };
        // SAFETY: TUNGETIFF writes one `struct ifreq` into `req`, which has that layout and
        // size; on any other kind of file the ioctl fails without writing.
        let ret = unsafe { libc::ioctl(owned.as_raw_fd(), libc::TUNGETIFF, &mut req) };
        if ret < 0 {
            let source = io::Error::last_os_error();
            return Err(if source.raw_os_error() == Some(libc::EBADFD) {
                NetError::NotAttached { fd }
            } else {
                NetError::NotTun { fd, source }
            });
        }
        let flags = c_int::from(req.flags);
        let missing: Vec<&str> = REQUIRED_FLAGS
            .iter()
            .filter(|(flag, _)| flags & flag == 0)
            .map(|&(_, what)| what)
            .collect();
        if !missing.is_empty() {
            return Err(NetError::TapFlags {
                fd,
                name: req.name(),
                missing: missing.join(", "),
            });
        }
        let tap = Self {
            fd: owned,
            name: req.name(),
        };
        tap.set_nonblocking()?;
        tap.set_vnet_hdr_len()?;
        Ok(tap)
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn set_vnet_hdr_len(&self) -> Result<(), NetError> {
        let len = VNET_HDR_LEN as c_int;
        // SAFETY: TUNSETVNETHDRSZ reads one int through the pointer, which points at `len`.
        let ret = unsafe { libc::ioctl(self.fd.as_raw_fd(), libc::TUNSETVNETHDRSZ, &len) };
        if ret < 0 {
            return Err(NetError::ConfigureTap {
                what: "TUNSETVNETHDRSZ",
                source: io::Error::last_os_error(),
            });
        }
        Ok(())
    }

    fn set_nonblocking(&self) -> Result<(), NetError> {
        let fd = self.fd.as_raw_fd();
        // SAFETY: F_GETFL takes no argument and reads only the descriptor, which we own.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        // SAFETY: F_SETFL with an integer argument on a descriptor we own.
        if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
            return Err(NetError::ConfigureTap {
                what: "O_NONBLOCK",
                source: io::Error::last_os_error(),
            });
        }
        Ok(())
    }
}

impl AsRawFd for Tap {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl TapIo for Tap {
    fn read_frame(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the whole call.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        // A negative return is an error; anything else is a byte count.
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }

    fn write_frame(&self, parts: &[VolatileSlice<'_, ()>]) -> io::Result<usize> {
        if parts.len() > MAX_CHAIN_SEGMENTS {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // The guards keep the pointers valid until writev has returned.
        let guards: Vec<_> = parts.iter().map(|p| p.ptr_guard()).collect();
        let iov: Vec<libc::iovec> = guards
            .iter()
            .zip(parts)
            .map(|(g, p)| libc::iovec {
                iov_base: g.as_ptr() as *mut libc::c_void,
                iov_len: p.len(),
            })
            .collect();
        // SAFETY: each iovec describes a VolatileSlice of guest memory, which stays mapped
        // while `parts` borrows it; writev only reads through them. The count is at most
        // MAX_CHAIN_SEGMENTS, below IOV_MAX.
        let n = unsafe { libc::writev(self.fd.as_raw_fd(), iov.as_ptr(), iov.len() as c_int) };
        drop(guards);
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }

    fn set_offload(&self, flags: u32) -> io::Result<()> {
        // SAFETY: TUNSETOFFLOAD takes its argument by value (an unsigned long), no pointer.
        let ret = unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                libc::TUNSETOFFLOAD,
                libc::c_ulong::from(flags),
            )
        };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::fs::File;
    use std::os::unix::net::UnixDatagram;
    use std::process::Command;

    /// Runs `body` on a thread of its own in a fresh network namespace (we run as root).
    pub(in crate::devices::virtio::net) fn in_new_netns<T: Send + 'static>(
        body: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        std::thread::spawn(move || {
            // SAFETY: unshare takes a flag word and changes only this thread's namespaces
            // (the thread is ours and ends after `body`).
            let ret = unsafe { libc::unshare(libc::CLONE_NEWNET) };
            assert_eq!(
                ret,
                0,
                "unshare(CLONE_NEWNET) failed (tests need root): {}",
                io::Error::last_os_error()
            );
            body()
        })
        .join()
        .expect("netns test thread panicked")
    }

    /// Runs `ip ARGS` in the calling thread's network namespace.
    pub(in crate::devices::virtio::net) fn ip(args: &str) {
        let status = Command::new("ip")
            .args(args.split_whitespace())
            .status()
            .expect("run ip (iproute2 must be installed)");
        assert!(status.success(), "ip {args} failed");
    }

    fn open_raw(flags: c_int, name: &str) -> OwnedFd {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(TUN_PATH)
            .expect("open /dev/net/tun");
        let mut req = IfReqFlags::new(name, flags).expect("name");
        // SAFETY: as in Tap::open: `req` is a writable ifreq-sized value.
        let ret = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req) };
        assert_eq!(ret, 0, "TUNSETIFF: {}", io::Error::last_os_error());
        OwnedFd::from(file)
    }

    #[test]
    fn test_tap_open_bad_name_fails_with_tap_name() {
        assert!(matches!(
            Tap::open("a-name-longer-than-15"),
            Err(NetError::TapName(_))
        ));
        assert!(matches!(Tap::open(""), Err(NetError::TapName(_))));
    }

    #[test]
    fn test_tap_open_in_netns_creates_named_interface() {
        let name = in_new_netns(|| {
            let tap = Tap::open("zt0").expect("create tap");
            let out = Command::new("ip")
                .args(["-d", "link", "show", "zt0"])
                .output()
                .expect("ip");
            (
                tap.name().to_string(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            )
        });

        assert_eq!(name.0, "zt0");
        assert!(name.1.contains("tap"), "{}", name.1);
        assert!(name.1.contains("vnet_hdr"), "{}", name.1);
    }

    #[test]
    fn test_tap_from_fd_good_tap_accepted_nonblocking() {
        let (name, would_block) = in_new_netns(|| {
            let fd = open_raw(libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR, "zfd0");
            let tap = Tap::from_inherited_fd(fd.as_raw_fd()).expect("accept tap fd");
            let mut buf = [0u8; 2048];
            let err = tap.read_frame(&mut buf).expect_err("nothing queued");
            (
                tap.name().to_string(),
                err.kind() == io::ErrorKind::WouldBlock,
            )
        });

        assert_eq!(name, "zfd0");
        assert!(would_block);
    }

    #[test]
    fn test_tap_from_fd_wrong_flags_fail_naming_each() {
        let errors = in_new_netns(|| {
            let tun = open_raw(libc::IFF_TUN | libc::IFF_NO_PI | libc::IFF_VNET_HDR, "ztun");
            let no_vnet = open_raw(libc::IFF_TAP | libc::IFF_NO_PI, "znov");
            let neither = open_raw(libc::IFF_TUN | libc::IFF_NO_PI, "zboth");
            [tun, no_vnet, neither].map(|fd| {
                Tap::from_inherited_fd(fd.as_raw_fd())
                    .expect_err("must be refused")
                    .to_string()
            })
        });

        assert!(
            errors[0].contains("IFF_TAP (it is a layer-3 tun)"),
            "{}",
            errors[0]
        );
        assert!(errors[0].contains("interface ztun"), "{}", errors[0]);
        assert!(errors[1].contains("without IFF_VNET_HDR"), "{}", errors[1]);
        assert!(
            errors[2].contains("without IFF_TAP (it is a layer-3 tun), IFF_VNET_HDR"),
            "{}",
            errors[2]
        );
    }

    #[test]
    fn test_tap_from_fd_not_tap_or_closed_fails_clearly() {
        let (sock, _peer) = UnixDatagram::pair().expect("socketpair");
        let unattached = File::open(TUN_PATH).expect("open tun");

        let not_tun = Tap::from_inherited_fd(sock.as_raw_fd()).expect_err("socket");
        let not_attached = Tap::from_inherited_fd(unattached.as_raw_fd()).expect_err("bare");
        let closed = Tap::from_inherited_fd(999_999).expect_err("closed");

        assert!(matches!(not_tun, NetError::NotTun { .. }), "{not_tun}");
        assert!(
            matches!(not_attached, NetError::NotAttached { .. }),
            "{not_attached}"
        );
        assert!(
            matches!(closed, NetError::InheritedFd { fd: 999_999, .. }),
            "{closed}"
        );
    }
}
