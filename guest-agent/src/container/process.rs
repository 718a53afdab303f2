//! What happens in a container process between fork and exec, in this order (the runtime
//! spec's `process` fields; runc's `finalizeNamespace` follows the same order):
//!
//! 1. unblock every signal (the agent, PID 1, blocks those it takes with sigwait);
//! 2. join the container's cgroup: write "0" to its `cgroup.procs`, opened before fork;
//! 3. a mount namespace of its own: `unshare(CLONE_NEWNS)`, `/` made a recursive slave so
//!    nothing done here reaches the zone;
//! 4. the container root becomes `/` and the zone's tree is dropped: `chdir(root)`, move the
//!    root mount onto `/` and `chroot(".")` (the agent may run from the initramfs, whose root
//!    mount `pivot_root(2)` refuses), bind the root onto itself, `chdir("..")` to that bind,
//!    `pivot_root(".", ".")` and detach the old root with `umount2(".", MNT_DETACH)`. The new
//!    root sits on top of the namespace's first mount, so `..` from it leads back to it, and
//!    no zone mount is reachable or listed in /proc/self/mountinfo;
//! 5. the container's UTS namespace, if it has its own hostname (`setns`);
//! 6. resource limits (`setrlimit`), still privileged so hard limits may rise;
//! 7. the bounding set is cut (`PR_CAPBSET_DROP`, needs CAP_SETPCAP, so before the uid
//!    changes);
//! 8. `PR_SET_KEEPCAPS`, then supplementary groups, gid and uid (`setgroups`, `setresgid`,
//!    `setresuid`, raw system calls: only this thread exists), then keep-caps off again;
//! 9. effective, permitted and inheritable sets (`capset`), then the ambient set
//!    (`PR_CAP_AMBIENT_CLEAR_ALL`, `PR_CAP_AMBIENT_RAISE`);
//! 10. `chdir(cwd)` as the user;
//! 11. `PR_SET_NO_NEW_PRIVS` when asked.
//!
//! The closure that does this must be async-signal-safe (the agent has other threads): every
//! string, list and descriptor it uses is built before fork, and it only makes system calls.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use super::caps::{CapSet, CapabilitySets};
use super::rlimits::Rlimit;
use super::users::Identity;

/// `_LINUX_CAPABILITY_VERSION_3` (`include/uapi/linux/capability.h`): two 32-bit words.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Everything the child needs, built in the agent.
#[derive(Debug)]
pub(super) struct ChildSteps {
    cgroup_procs: Option<OwnedFd>,
    root: CString,
    uts: Option<OwnedFd>,
    rlimits: Vec<(libc::__rlimit_resource_t, libc::rlimit)>,
    bounding_drop: Vec<libc::c_ulong>,
    uid: libc::uid_t,
    gid: libc::gid_t,
    groups: Vec<libc::gid_t>,
    capabilities: [CapData; 2],
    ambient: Vec<libc::c_ulong>,
    cwd: CString,
    no_new_privileges: bool,
}

/// The parts of a container and a process config the child steps are built from.
#[derive(Debug)]
pub(super) struct StepsInput<'a> {
    pub cgroup_procs: Option<OwnedFd>,
    pub root: CString,
    pub uts: Option<OwnedFd>,
    pub rlimits: &'a [Rlimit],
    pub identity: &'a Identity,
    pub additional_gids: &'a [u32],
    pub capabilities: CapabilitySets,
    pub last_cap: u32,
    pub cwd: CString,
    pub no_new_privileges: bool,
}

impl ChildSteps {
    pub(super) fn new(input: StepsInput<'_>) -> Self {
        let caps = input.capabilities;
        let mut groups = input.identity.groups.clone();
        for gid in input.additional_gids {
            if !groups.contains(gid) {
                groups.push(*gid);
            }
        }
        let word = |set: CapSet, half: u32| (set.mask() >> (32 * half)) as u32;
        let data = |half| CapData {
            effective: word(caps.effective, half),
            permitted: word(caps.permitted, half),
            inheritable: word(caps.inheritable, half),
        };
        ChildSteps {
            cgroup_procs: input.cgroup_procs,
            root: input.root,
            uts: input.uts,
            rlimits: input
                .rlimits
                .iter()
                .map(|l| {
                    let limit = libc::rlimit {
                        rlim_cur: l.soft(),
                        rlim_max: l.hard(),
                    };
                    (l.resource().raw(), limit)
                })
                .collect(),
            bounding_drop: (0..=input.last_cap)
                .filter(|bit| caps.bounding.mask() & (1 << bit) == 0)
                .map(libc::c_ulong::from)
                .collect(),
            uid: input.identity.uid,
            gid: input.identity.gid,
            groups,
            capabilities: [data(0), data(1)],
            ambient: caps
                .ambient
                .iter()
                .map(|c| libc::c_ulong::from(c.bit()))
                .collect(),
            cwd: input.cwd,
            no_new_privileges: input.no_new_privileges,
        }
    }

    /// Adds the steps to `command`, after any `pre_exec` closures it already has.
    pub(super) fn install(self, command: &mut Command) {
        // SAFETY: the closure runs in the forked child before exec. `run` only makes system
        // calls (sigprocmask, write, unshare, mount, chdir, chroot, pivot_root, umount2,
        // setns, setrlimit, prctl, setgroups, setresgid, setresuid, capset) on data built in
        // the parent and moved into the closure: it neither allocates nor takes locks.
        unsafe {
            command.pre_exec(move || self.run());
        }
    }

    fn run(&self) -> io::Result<()> {
        // 1. Signals.
        // SAFETY: sigemptyset and sigprocmask write to and read from a local sigset_t.
        unsafe {
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            check(libc::sigprocmask(
                libc::SIG_SETMASK,
                &none,
                std::ptr::null_mut(),
            ))?;
        }
        // 2. The cgroup.
        if let Some(procs) = &self.cgroup_procs {
            // SAFETY: writes one byte from a static buffer to a descriptor we own.
            let written = unsafe { libc::write(procs.as_raw_fd(), b"0".as_ptr().cast(), 1) };
            if written != 1 {
                return Err(io::Error::last_os_error());
            }
        }
        // 3.-4. The mount namespace and the root.
        self.enter_root()?;
        // 5. The hostname.
        if let Some(uts) = &self.uts {
            // SAFETY: setns on a namespace descriptor we own.
            check(unsafe { libc::setns(uts.as_raw_fd(), libc::CLONE_NEWUTS) })?;
        }
        // 6. Limits.
        for (resource, limit) in &self.rlimits {
            // SAFETY: `limit` is a valid rlimit for the duration of the call.
            check(unsafe { libc::setrlimit(*resource, limit) })?;
        }
        // 7. The bounding set.
        for cap in &self.bounding_drop {
            // SAFETY: prctl with integer arguments only.
            check(unsafe { libc::prctl(libc::PR_CAPBSET_DROP, *cap, 0, 0, 0) })?;
        }
        // 8. Groups and ids, keeping the permitted set across the uid change.
        // SAFETY: prctl and the id system calls take integers and, for setgroups, a pointer
        // to `groups.len()` gids that stay alive for the call.
        unsafe {
            check(libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0))?;
            check_long(libc::syscall(
                libc::SYS_setgroups,
                self.groups.len(),
                self.groups.as_ptr(),
            ))?;
            check_long(libc::syscall(
                libc::SYS_setresgid,
                self.gid,
                self.gid,
                self.gid,
            ))?;
            check_long(libc::syscall(
                libc::SYS_setresuid,
                self.uid,
                self.uid,
                self.uid,
            ))?;
            check(libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0))?;
        }
        // 9. Capabilities.
        let mut header = CapHeader {
            version: CAPABILITY_VERSION_3,
            pid: 0,
        };
        // SAFETY: capset reads the header and two CapData words (version 3), all live here.
        check_long(unsafe {
            libc::syscall(
                libc::SYS_capset,
                &mut header as *mut CapHeader,
                self.capabilities.as_ptr(),
            )
        })?;
        // SAFETY: prctl with integer arguments only.
        unsafe {
            check(libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
                0,
                0,
                0,
            ))?;
            for cap in &self.ambient {
                check(libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                    *cap,
                    0,
                    0,
                ))?;
            }
        }
        // 10. The working directory, as the user.
        // SAFETY: chdir reads a NUL-terminated string built in the parent.
        check(unsafe { libc::chdir(self.cwd.as_ptr()) })?;
        // 11. No new privileges.
        if self.no_new_privileges {
            // SAFETY: prctl with integer arguments only.
            check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })?;
        }
        Ok(())
    }

    /// Steps 3 and 4 (see the module documentation).
    fn enter_root(&self) -> io::Result<()> {
        let dot = c".".as_ptr();
        let null = std::ptr::null::<libc::c_char>();
        // SAFETY: every pointer is a NUL-terminated string that outlives the call (literals
        // or `self.root`) or null where mount(2) and pivot_root(2) allow it.
        unsafe {
            check(libc::unshare(libc::CLONE_NEWNS))?;
            check(libc::mount(
                null,
                c"/".as_ptr(),
                null,
                libc::MS_REC | libc::MS_SLAVE,
                std::ptr::null(),
            ))?;
            check(libc::chdir(self.root.as_ptr()))?;
            check(libc::mount(
                dot,
                c"/".as_ptr(),
                null,
                libc::MS_MOVE,
                std::ptr::null(),
            ))?;
            check(libc::chroot(dot))?;
            check(libc::mount(
                dot,
                dot,
                null,
                libc::MS_BIND | libc::MS_REC,
                std::ptr::null(),
            ))?;
            // ".." at the root goes nowhere but then down into what is mounted there: the bind.
            check(libc::chdir(c"..".as_ptr()))?;
            check_long(libc::syscall(libc::SYS_pivot_root, dot, dot))?;
            // "." is now the old root, stacked on the new one.
            check(libc::umount2(dot, libc::MNT_DETACH))?;
            check(libc::chdir(c"/".as_ptr()))?;
        }
        Ok(())
    }
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn check_long(ret: libc::c_long) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::caps::{default_capabilities, Capability};

    fn identity() -> Identity {
        Identity {
            uid: 1000,
            gid: 1000,
            groups: vec![1000, 10],
            home: "/home/app".into(),
        }
    }

    fn steps(caps: CapabilitySets, additional_gids: &[u32]) -> ChildSteps {
        let limits = [Rlimit::parse("RLIMIT_NOFILE", 64, 128).unwrap()];
        ChildSteps::new(StepsInput {
            cgroup_procs: None,
            root: c"/r".to_owned(),
            uts: None,
            rlimits: &limits,
            identity: &identity(),
            additional_gids,
            capabilities: caps,
            last_cap: 40,
            cwd: c"/".to_owned(),
            no_new_privileges: true,
        })
    }

    #[test]
    fn test_child_steps_bounding_drop_is_complement_up_to_last_cap() {
        let built = steps(default_capabilities(), &[]);

        let kept: Vec<u64> = (0..=40u64)
            .filter(|b| !built.bounding_drop.contains(b))
            .collect();
        assert_eq!(kept, [0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 27, 29, 31]);
        assert_eq!(built.capabilities[0].effective, 0xa804_25fb);
        assert_eq!(built.capabilities[1].effective, 0);
        assert!(built.ambient.is_empty());
    }

    #[test]
    fn test_child_steps_high_caps_in_second_word_ambient_listed() {
        let mut caps = default_capabilities();
        let bpf = Capability::from_name("CAP_BPF").unwrap();
        let raw = Capability::from_name("CAP_NET_RAW").unwrap();
        caps.permitted = caps.permitted.with(bpf);
        caps.bounding = caps.bounding.with(bpf);
        caps.inheritable = CapSet::EMPTY.with(raw);
        caps.ambient = CapSet::EMPTY.with(raw);

        let built = steps(caps, &[]);

        assert_eq!(built.capabilities[1].permitted, 1 << (39 - 32));
        assert_eq!(built.capabilities[0].inheritable, 1 << 13);
        assert_eq!(built.ambient, [13]);
        assert!(!built.bounding_drop.contains(&39));
    }

    #[test]
    fn test_child_steps_groups_additional_deduplicated_rlimits_raw() {
        let built = steps(default_capabilities(), &[10, 44, 44]);

        assert_eq!(built.groups, [1000, 10, 44]);
        assert_eq!(built.rlimits.len(), 1);
        assert_eq!(built.rlimits[0].0, libc::RLIMIT_NOFILE);
        assert_eq!(
            (built.rlimits[0].1.rlim_cur, built.rlimits[0].1.rlim_max),
            (64, 128)
        );
    }
}
