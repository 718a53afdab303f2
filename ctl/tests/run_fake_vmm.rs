//! `zonectl run` as a process, with the `fake_vmm` example standing in for `zone-vmm` (it
//! plays the agent on the host): exit codes, output, failure reports and cleanup.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// `cargo test` builds examples next to the test binaries' directory.
fn fake_vmm() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    let debug_dir = exe.parent().and_then(Path::parent).expect("target dir");
    let fake = debug_dir.join("examples").join("fake_vmm");
    assert!(
        fake.is_file(),
        "{} missing: run the tests with cargo test -p zonectl",
        fake.display()
    );
    fake
}

struct Setup {
    dir: TempDir,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("bzImage"), b"kernel").expect("kernel");
        fs::write(dir.path().join("initrd"), b"initrd").expect("initrd");
        Setup { dir }
    }

    fn state_root(&self) -> PathBuf {
        self.dir.path().join("zones")
    }

    fn zonectl(&self, mode: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_zonectl"));
        cmd.arg("run")
            .arg("--bare")
            .arg("--force")
            .arg("--kernel")
            .arg(self.dir.path().join("bzImage"))
            .arg("--initrd")
            .arg(self.dir.path().join("initrd"))
            .arg("--vmm")
            .arg(fake_vmm())
            .arg("--state-root")
            .arg(self.state_root())
            .args(args)
            .env("FAKE_VMM_MODE", mode)
            .stdin(Stdio::null());
        cmd
    }

    fn zones_left(&self) -> Vec<PathBuf> {
        fs::read_dir(self.state_root())
            .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn test_run_command_output_and_exit_code_passed_through() {
    let setup = Setup::new();

    let out: Output = setup
        .zonectl(
            "agent",
            &["--", "sh", "-c", "echo out; echo err >&2; exit 7"],
        )
        .output()
        .unwrap();

    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "out\n");
    assert!(text(&out.stderr).contains("err\n"));
    assert!(setup.zones_left().is_empty(), "{:?}", setup.zones_left());
}

#[test]
fn test_run_interactive_env_stdin_reach_command() {
    let setup = Setup::new();
    let mut child = setup
        .zonectl(
            "agent",
            &[
                "-i",
                "-e",
                "WHO=zone",
                "--",
                "sh",
                "-c",
                "cat; echo \"$WHO\"",
            ],
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"hello\n").unwrap();

    let out = child.wait_with_output().unwrap();

    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), "hello\nzone\n");
}

#[test]
fn test_run_signal_and_missing_command_exit_codes() {
    let setup = Setup::new();

    let killed = setup
        .zonectl("agent", &["--", "sh", "-c", "kill -TERM $$"])
        .output()
        .unwrap();
    let missing = setup
        .zonectl("agent", &["--", "no-such-command-anywhere"])
        .output()
        .unwrap();

    assert_eq!(killed.status.code(), Some(128 + 15));
    assert_eq!(missing.status.code(), Some(127));
    assert!(
        text(&missing.stderr).contains("command not found"),
        "{}",
        text(&missing.stderr)
    );
    assert!(setup.zones_left().is_empty());
}

#[test]
fn test_run_vmm_fails_125_with_stderr_and_console_tail() {
    let setup = Setup::new();

    let out = setup.zonectl("fail", &["--", "true"]).output().unwrap();

    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{stderr}");
    assert!(stderr.contains("cannot open /dev/kvm"), "{stderr}");
    assert!(stderr.contains("fake console line 2"), "{stderr}");
    assert!(setup.zones_left().is_empty());
}

#[test]
fn test_run_missing_kernel_125_before_anything() {
    let setup = Setup::new();
    fs::remove_file(setup.dir.path().join("bzImage")).unwrap();

    let out = setup.zonectl("agent", &["--", "true"]).output().unwrap();

    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("kernel"),
        "{}",
        text(&out.stderr)
    );
    assert!(!setup.state_root().exists());
}

#[test]
fn test_run_sigint_kills_vmm_and_removes_state() {
    let setup = Setup::new();
    let child = setup
        .zonectl("hang", &["--", "true"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let zone = loop {
        if let Some(zone) = setup.zones_left().pop() {
            if zone.join("console.log").exists() {
                break zone;
            }
        }
        assert!(Instant::now() < deadline, "the zone never started");
        thread::sleep(Duration::from_millis(20));
    };

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();

    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    assert!(!zone.exists());
    let vmm_left = Command::new("pgrep").arg("-f").arg(&zone).output().unwrap();
    assert!(vmm_left.stdout.is_empty(), "a fake VMM survived");
}
