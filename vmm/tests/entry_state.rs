//! Tier 2: on the machine's own /dev/kvm (no testbed), a freestanding guest reports the 64-bit
//! entry state zone-vmm gives it, and this test checks it against the Linux boot protocol;
//! another one triple-faults, which ends the zone as failed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Assembles and links `src` into an ELF64 entered at 0x100000.
fn assemble(dir: &Path, src: &Path) -> PathBuf {
    let stem = src.file_stem().expect("source name");
    let obj = dir.join(stem).with_extension("o");
    let elf = dir.join(stem).with_extension("elf");
    let run = |cmd: &mut Command| {
        let out = cmd.output().unwrap_or_else(|e| {
            panic!("cannot run {cmd:?} ({e}); the tier-2 tests need binutils: run hack/setup")
        });
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(Command::new("as").arg("--64").arg("-o").arg(&obj).arg(src));
    run(Command::new("ld")
        .args([
            "-nostdlib",
            "-static",
            "-N",
            "-Ttext=0x100000",
            "-e",
            "_start",
            "-o",
        ])
        .arg(&elf)
        .arg(&obj));
    elf
}

/// The guest that reports its entry state.
fn build_guest(dir: &Path) -> PathBuf {
    assemble(
        dir,
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/guests/entry_state.S"),
    )
}

fn require_kvm() {
    assert!(
        Path::new("/dev/kvm").exists(),
        "tier-2 tests need /dev/kvm on this machine (load kvm_intel, kvm_amd or kvm_pvm)"
    );
}

fn vmm() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_zone-vmm"));
    cmd.arg("--allow-pvm");
    cmd
}

fn report(stdout: &str) -> HashMap<String, String> {
    stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn hex(map: &HashMap<String, String>, key: &str) -> u64 {
    let v = map
        .get(key)
        .unwrap_or_else(|| panic!("guest did not report {key}: {map:?}"));
    u64::from_str_radix(v, 16).unwrap_or_else(|e| panic!("{key}={v}: {e}"))
}

#[test]
fn test_entry_state_matches_64bit_boot_protocol() {
    require_kvm();
    let dir = tempfile::tempdir().expect("tempdir");
    let guest = build_guest(dir.path());
    let out = vmm()
        .arg("--kernel")
        .arg(&guest)
        .args(["--memory", "64M", "--cmdline", "zone test=entry"])
        .output()
        .expect("run zone-vmm");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "zone-vmm failed ({}): {}\n{stdout}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let r = report(&stdout);

    assert_eq!(hex(&r, "RSI"), 0x7000, "rsi points at the zero page");
    assert_eq!(hex(&r, "RSP"), 0x8ff0);
    assert_eq!(hex(&r, "RFLAGS") & 0x200, 0, "interrupts disabled");
    let cr0 = hex(&r, "CR0");
    assert_eq!(
        cr0 & 0x8000_0001,
        0x8000_0001,
        "protected mode and paging: {cr0:#x}"
    );
    assert_eq!(hex(&r, "CR3"), 0x9000);
    assert_ne!(hex(&r, "CR4") & 0x20, 0, "PAE");
    assert_eq!(
        hex(&r, "EFER") & 0x500,
        0x500,
        "long mode enabled and active"
    );
    assert_eq!(hex(&r, "CS"), 0x10, "__BOOT_CS");
    assert_eq!(hex(&r, "DS"), 0x18, "__BOOT_DS");
    assert_eq!(hex(&r, "SS"), 0x18);
    assert_eq!(hex(&r, "GDT_BASE"), 0x500);
    assert_eq!(hex(&r, "GDT_LIMIT"), 5 * 8 - 1);
    let cs = hex(&r, "GDT_CS_ENTRY");
    assert_eq!((cs >> 53) & 1, 1, "64-bit code segment (L bit): {cs:#x}");
    assert_eq!((cs >> 47) & 1, 1, "present");
    assert_eq!(
        hex(&r, "PML4E0") & !0xfff,
        0xa000,
        "PML4[0] points at the PDPT"
    );
    assert_eq!(hex(&r, "HDR_MAGIC"), 0x5372_6448, "HdrS in the zero page");
    assert_eq!(hex(&r, "LOADER_TYPE"), 0xff);
    // Low RAM, the reserved BIOS area (ACPI tables, TPM event log), RAM from 1 MiB.
    assert_eq!(hex(&r, "E820_ENTRIES"), 3);
    assert_eq!(hex(&r, "CMDLINE_PTR"), 0x2_0000);
    // Devices are declared in ACPI, so the command line arrives exactly as given.
    assert_eq!(
        r.get("CMDLINE").map(String::as_str),
        Some("zone test=entry")
    );
}

#[test]
fn test_entry_state_two_vcpus_boot_and_reset_ends_cleanly() {
    require_kvm();
    let dir = tempfile::tempdir().expect("tempdir");
    let guest = build_guest(dir.path());
    let log = dir.path().join("console.log");
    let out = vmm()
        .arg("--kernel")
        .arg(&guest)
        .args(["--cpus", "2", "--serial-log"])
        .arg(&log)
        .output()
        .expect("run zone-vmm");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "console went to the log, not stdout");
    let console = std::fs::read_to_string(&log).expect("console log");
    assert!(console.contains("RSI=0000000000007000"), "{console}");
}

#[test]
fn test_guest_triple_fault_fails_the_zone_naming_it() {
    require_kvm();
    let dir = tempfile::tempdir().expect("tempdir");
    let guest = assemble(
        dir.path(),
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/guests/triple_fault.S"),
    );
    let out = vmm()
        .arg("--kernel")
        .arg(&guest)
        .args(["--memory", "64M", "--no-console"])
        .output()
        .expect("run zone-vmm");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a triple fault is no clean reboot: {stderr}"
    );
    assert!(
        stderr.contains("the guest triple-faulted (KVM_EXIT_SHUTDOWN)"),
        "{stderr}"
    );
}

#[test]
fn test_bad_inputs_fail_with_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let junk = dir.path().join("junk");
    std::fs::write(&junk, b"not a kernel").expect("write");
    let big_initrd = dir.path().join("initrd");
    std::fs::File::create(&big_initrd)
        .and_then(|f| f.set_len(40 << 20))
        .expect("initrd");
    let guest = build_guest(dir.path());
    let cases: Vec<(Vec<&std::ffi::OsStr>, &str)> = vec![
        (
            vec!["--kernel".as_ref(), "/nonexistent/vmlinux".as_ref()],
            "kernel /nonexistent/vmlinux",
        ),
        (
            vec!["--kernel".as_ref(), junk.as_os_str()],
            "is not a Linux kernel",
        ),
        (
            vec![
                "--kernel".as_ref(),
                guest.as_os_str(),
                "--memory".as_ref(),
                "0".as_ref(),
            ],
            "memory must be between",
        ),
        (
            vec![
                "--kernel".as_ref(),
                guest.as_os_str(),
                "--memory".as_ref(),
                "lots".as_ref(),
            ],
            "expected a size",
        ),
        (
            vec![
                "--kernel".as_ref(),
                guest.as_os_str(),
                "--cpus".as_ref(),
                "0".as_ref(),
            ],
            "cpus must be between",
        ),
        (
            vec![
                "--kernel".as_ref(),
                guest.as_os_str(),
                "--disk".as_ref(),
                "/nonexistent/disk.img".as_ref(),
            ],
            "disk /nonexistent/disk.img",
        ),
        (
            vec![
                "--kernel".as_ref(),
                guest.as_os_str(),
                "--memory".as_ref(),
                "32M".as_ref(),
                "--initrd".as_ref(),
                big_initrd.as_os_str(),
            ],
            "does not fit in guest memory",
        ),
    ];
    for (args, expected) in cases {
        let out = vmm().args(&args).output().expect("run zone-vmm");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{args:?}: expected {expected:?} in {stderr}"
        );
    }
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(
        left.len(),
        4,
        "nothing created besides the test's own files: {left:?}"
    );
}

/// Waits up to 10 s for `path` to appear.
fn wait_for(path: &Path) -> bool {
    for _ in 0..1000 {
        if path.exists() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    false
}

#[test]
fn test_failed_start_and_sigterm_leave_no_socket_behind() {
    require_kvm();
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("vsock.sock");

    // The vsock device is created before the kernel is loaded: a bad kernel must undo it.
    let junk = dir.path().join("junk");
    std::fs::write(&junk, b"not a kernel").expect("write");
    let out = vmm()
        .arg("--kernel")
        .arg(&junk)
        .arg("--vsock")
        .arg(&socket)
        .output()
        .expect("run zone-vmm");
    assert_eq!(out.status.code(), Some(1));
    assert!(!socket.exists(), "socket left after a failed start");

    // A guest that halts forever; SIGTERM stops the zone and removes the socket.
    let src = dir.path().join("halt.S");
    std::fs::write(
        &src,
        ".code64\n.globl _start\n_start: cli\n1: hlt\njmp 1b\n",
    )
    .expect("write");
    let elf = assemble(dir.path(), &src);
    let mut child = vmm()
        .arg("--kernel")
        .arg(&elf)
        .arg("--vsock")
        .arg(&socket)
        .args(["--cpus", "2", "--no-console"])
        .spawn()
        .expect("spawn zone-vmm");
    assert!(wait_for(&socket), "the VMM never created its vsock socket");
    // SAFETY: kill(2) on our own child's pid has no memory-safety requirements.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(143), "stopped by SIGTERM");
    assert!(!socket.exists(), "socket left after SIGTERM");
}
