//! Test support for Zones' end-to-end tests: running a shell script inside the KVM testbed
//! (`hack/testbed`, see "Facts about our build and CI machines" in `docs/DESIGN.md`).
//!
//! Tests never skip: when something the testbed needs is missing, [`testbed_run`] panics
//! naming it and the command that provides it (`hack/setup` or `hack/build`).

pub mod containerd;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where the script given to [`testbed_run`] is placed inside the testbed.
const SCRIPT_GUEST_PATH: &str = "/zones/test/script.sh";

/// Binaries `hack/build` builds statically and `hack/testbed` puts into `/zones/bin`.
const ZONE_BINARIES: [&str; 3] = ["zone-vmm", "zone-agent", "zonectl"];

/// What a command run in the testbed produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestbedOutput {
    /// The command's standard output.
    pub stdout: String,
    /// The command's standard error, followed by any message from `hack/testbed` itself.
    pub stderr: String,
    /// The command's exit status; 124 when the testbed timed out, 125 when it failed.
    pub status: i32,
}

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives in a folder of the repository")
        .to_path_buf()
}

/// Cargo's target directory as `hack/build` and `hack/testbed` see it.
fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if Path::new(&dir).is_absolute() => PathBuf::from(dir),
        Some(dir) => root.join(dir),
        None => root.join("target"),
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

/// Runs a repository script that prints a path when a cached artefact exists and fails otherwise.
fn cached(root: &Path, script: &str, args: &[&str]) -> bool {
    Command::new(root.join(script))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|status| status.success())
        .unwrap_or(false)
}

/// Everything the testbed needs that is missing, each with the command that provides it.
pub fn missing_prerequisites() -> Vec<String> {
    let root = repo_root();
    let mut missing = Vec::new();
    if !on_path("qemu-system-x86_64") {
        missing.push("qemu-system-x86_64 (run hack/setup)".to_owned());
    }
    if !Path::new("/bin/busybox").is_file() {
        missing.push("/bin/busybox from busybox-static (run hack/setup)".to_owned());
    }
    let bin_dir = target_dir(&root).join("x86_64-unknown-linux-gnu/release");
    for name in ZONE_BINARIES {
        let path = bin_dir.join(name);
        if !path.is_file() {
            missing.push(format!("static binary {} (run hack/build)", path.display()));
        }
    }
    if !cached(&root, "images/kernel/build", &["--cached-path"]) {
        missing.push("the zone kernel in ~/.cache/zones/kernel (run hack/build)".to_owned());
    }
    if !cached(&root, "hack/testbed", &["prepare", "--check"]) {
        missing.push("the testbed kernel in ~/.cache/zones/testbed (run hack/build)".to_owned());
    }
    missing
}

/// Runs `script` with `sh` as root inside the KVM testbed and returns its output and status.
///
/// `extra` lists host files or directories to copy into the testbed, each with its absolute
/// path inside. The testbed also holds the static zone binaries in `/zones/bin` (on `PATH`)
/// and the zone kernel and initrd (`$ZONES_KERNEL`, `$ZONES_VMLINUX`, `$ZONES_INITRD`).
///
/// # Panics
///
/// When a prerequisite is missing (naming it and the command that provides it) or when
/// `hack/testbed` cannot be started.
pub fn testbed_run(script: &str, extra: &[(PathBuf, &str)]) -> TestbedOutput {
    testbed_run_with(script, extra, &[])
}

/// [`testbed_run`] with more `hack/testbed run` options (`--containerd`, `--timeout SECS`).
///
/// # Panics
///
/// As [`testbed_run`].
pub fn testbed_run_with(
    script: &str,
    extra: &[(PathBuf, &str)],
    options: &[&str],
) -> TestbedOutput {
    let missing = missing_prerequisites();
    assert!(
        missing.is_empty(),
        "the KVM testbed cannot run; missing:\n  {}",
        missing.join("\n  ")
    );

    let mut file = tempfile::Builder::new()
        .prefix("zones-testbed-script.")
        .suffix(".sh")
        .tempfile()
        .expect("create a temporary file for the testbed script");
    file.write_all(script.as_bytes())
        .and_then(|()| file.flush())
        .expect("write the testbed script");

    let first = run_testbed(file.path(), extra, options);
    if !(first.status == 125 && first.stderr.contains(TESTBED_RESET)) {
        return first;
    }
    // The emulated machine reset before the script ended. Our code runs in the testbed's user
    // space and in zones nested below it, neither of which can reset it without a fault in
    // the testbed's kernel or in QEMU's emulation (seen about once per few hundred zone
    // runs). The script runs once more, and the reset is recorded for hack/test to report.
    record_testbed_reset(script, &first);
    run_testbed(file.path(), extra, options)
}

/// What `hack/testbed` says when the testbed stopped without CMD's exit status: it reset.
const TESTBED_RESET: &str = "the testbed stopped without reporting CMD's exit status";

/// Appends a testbed reset to `$ZONES_TESTBED_RESET_LOG`, by default
/// `<target>/testbed-resets.log`, which hack/test prints.
fn record_testbed_reset(script: &str, output: &TestbedOutput) {
    let path = std::env::var_os("ZONES_TESTBED_RESET_LOG")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir(&repo_root()).join("testbed-resets.log"));
    let first_line = script.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let entry = format!(
        "--- the testbed reset while running a script starting {first_line:?}; it ran again\n{}\n",
        output.stderr.trim_end()
    );
    eprintln!("{entry}");
    let appended = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(entry.as_bytes()));
    if let Err(e) = appended {
        eprintln!("cannot record the testbed reset in {}: {e}", path.display());
    }
}

fn run_testbed(script: &Path, extra: &[(PathBuf, &str)], options: &[&str]) -> TestbedOutput {
    let root = repo_root();
    let mut command = Command::new(root.join("hack/testbed"));
    command.arg("run").args(options);
    command
        .arg("--add")
        .arg(add_spec(script, SCRIPT_GUEST_PATH));
    for (host, guest) in extra {
        command.arg("--add").arg(add_spec(host, guest));
    }
    command.args(["--", "sh", SCRIPT_GUEST_PATH]);
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", root.join("hack/testbed").display()));

    TestbedOutput {
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        // A signal (no code) is reported the way a shell would: 128 + signal number.
        status: output.status.code().unwrap_or_else(|| {
            use std::os::unix::process::ExitStatusExt;
            128 + output.status.signal().unwrap_or(0)
        }),
    }
}

fn add_spec(host: &Path, guest: &str) -> String {
    let host = host.to_str().expect("testbed --add paths must be UTF-8");
    assert!(
        guest.starts_with('/'),
        "guest path {guest:?} for {host} must be absolute"
    );
    format!("{host}:{guest}")
}

/// Appended to a testbed script: reports what zones left behind, for [`assert_nothing_left`].
pub const REPORT_LEFTOVERS: &str = r#"
echo "left-state=$(ls -A /run/zones 2>/dev/null | wc -l)"
echo "left-vmm=$(ps -o comm | grep -c '^zone-vmm')"
"#;

/// The value of the first `KEY=VALUE` line of the script's stdout.
///
/// # Panics
///
/// When there is no such line, showing the whole output.
pub fn value<'a>(out: &'a TestbedOutput, key: &str) -> &'a str {
    out.stdout
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= line\n{out:#?}"))
}

/// Asserts that stdout has `line` (ignoring surrounding white space) on a line of its own.
pub fn assert_has(out: &TestbedOutput, line: &str) {
    assert!(
        out.stdout.lines().any(|l| l.trim() == line),
        "expected the line {line:?}\n{out:#?}"
    );
}

/// Asserts that [`REPORT_LEFTOVERS`] found no state directory and no VMM process.
pub fn assert_nothing_left(out: &TestbedOutput) {
    assert_eq!(
        value(out, "left-state"),
        "0",
        "state directories left\n{out:#?}"
    );
    assert_eq!(value(out, "left-vmm"), "0", "VMM processes left\n{out:#?}");
}
