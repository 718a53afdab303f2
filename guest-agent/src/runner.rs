//! Runs one `RunCommandRequest` to completion and captures its output.
//!
//! Standard input is written and standard output and error are read on separate threads, so
//! a command that fills one pipe while we are busy with another cannot deadlock us.

use std::io::{self, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;

use nix::sys::signal::{kill, SigSet, Signal};
use nix::unistd::Pid;
use std::sync::atomic::{AtomicI32, Ordering};
use zone_proto::agent::v1::{RunCommandRequest, RunCommandResponse};

use crate::container::rootfs::CONTAINER_ROOT;
use crate::container::Launch;
use crate::reaper::{ChildWaiter, ExitOutcome};
use crate::tty::Pty;

/// PATH given to every command unless the request's env sets its own.
pub const DEFAULT_PATH: &str = "/bin:/sbin:/usr/bin:/usr/sbin";

/// Largest amount of each of stdout and stderr returned; the rest is read and dropped so that
/// both fit in one 16 MiB frame.
pub const MAX_CAPTURE: usize = 7 << 20;

/// Exit code reported when the command was not found (shell convention).
pub const EXIT_NOT_FOUND: i32 = 127;
/// Exit code reported when the command could not be run for another reason.
pub const EXIT_CANNOT_RUN: i32 = 126;

/// Pid of the zone's main command: the first command started while none was registered.
static MAIN_COMMAND: AtomicI32 = AtomicI32::new(0);

/// Why a signal could not be sent to the main command.
#[derive(Debug, PartialEq, Eq)]
pub enum SignalMainError {
    NoCommand,
    Failed(String),
}

/// Sends `signal` to the zone's main command.
pub fn signal_main(signal: i32) -> Result<(), SignalMainError> {
    let signal = Signal::try_from(signal)
        .map_err(|_| SignalMainError::Failed(format!("{signal} is not a signal")))?;
    match MAIN_COMMAND.load(Ordering::SeqCst) {
        0 => Err(SignalMainError::NoCommand),
        pid => kill(Pid::from_raw(pid), signal)
            .map_err(|e| SignalMainError::Failed(format!("signalling pid {pid}: {e}"))),
    }
}

/// Runs the requested command; never fails, problems are reported in the response.
pub fn run_command(request: &RunCommandRequest, waiter: &dyn ChildWaiter) -> RunCommandResponse {
    let (mut command, program) = match build_command(request) {
        Ok(built) => built,
        Err(message) => return error_response(EXIT_CANNOT_RUN, message),
    };
    // A container has its own devpts: its terminal must come from there to have a name in it.
    let ptmx = match request.rootfs {
        Some(_) => Path::new(CONTAINER_ROOT).join("dev/pts/ptmx"),
        None => PathBuf::from("/dev/ptmx"),
    };
    let pty = match request.tty.then(|| Pty::open(&ptmx)).transpose() {
        Ok(pty) => pty,
        Err(e) => return error_response(EXIT_CANNOT_RUN, format!("cannot open a terminal: {e}")),
    };
    if let Some(pty) = &pty {
        if let Err(e) = pty.attach(&mut command) {
            return error_response(EXIT_CANNOT_RUN, format!("cannot attach the terminal: {e}"));
        }
    }
    let child = match waiter.spawn(&mut command) {
        Ok(child) => child,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return error_response(EXIT_NOT_FOUND, format!("{program}: command not found"));
        }
        Err(e) => return error_response(EXIT_CANNOT_RUN, format!("{program}: {e}")),
    };
    let pid = i32::try_from(child.id()).unwrap_or(0);
    let is_main = MAIN_COMMAND
        .compare_exchange(0, pid, Ordering::SeqCst, Ordering::SeqCst)
        .is_ok();
    // The command holds copies of the terminal's slave side: they must close before reading
    // the master can end.
    drop(command);
    let (child, stdout, stderr) = match pty {
        Some(pty) => (child, pty.exchange(&request.stdin, MAX_CAPTURE), Vec::new()),
        None => exchange_stdio(child, &request.stdin),
    };
    let mut response = RunCommandResponse {
        stdout,
        stderr,
        ..Default::default()
    };
    let waited = waiter.wait(child);
    if is_main {
        MAIN_COMMAND.store(0, Ordering::SeqCst);
    }
    match waited {
        Ok(ExitOutcome::Exited(code)) => response.exit_code = code,
        Ok(ExitOutcome::Signaled(signal)) => response.signal = signal,
        Err(e) => {
            response.exit_code = EXIT_CANNOT_RUN;
            response.error = format!("{program}: waiting for the command: {e}");
        }
    }
    tracing::info!(
        program = %program,
        exit_code = response.exit_code,
        signal = response.signal,
        "command finished"
    );
    response
}

fn build_command(request: &RunCommandRequest) -> Result<(Command, &str), String> {
    let Some((program, args)) = request.args.split_first() else {
        return Err("request has no args: nothing to run".to_string());
    };
    if program.is_empty() {
        return Err("args[0] is empty: nothing to run".to_string());
    }
    let launch = Launch::prepare(request).map_err(|e| report(&e))?;
    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .env("PATH", launch.default_path());
    if let Some(home) = launch.home() {
        command.env("HOME", home);
    }
    for entry in &request.env {
        match entry.split_once('=') {
            Some((key, value)) if !key.is_empty() => {
                command.env(key, value);
            }
            _ => return Err(format!("env entry {entry:?} is not KEY=VALUE")),
        }
    }
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // PID 1 blocks the signals it takes with sigwait and children inherit the mask: without
    // this, a command in the zone could not be stopped with SIGTERM.
    // SAFETY: the closure runs in the forked child before exec and only calls
    // pthread_sigmask(3), which is async-signal-safe; it shares no memory with the parent.
    unsafe {
        command.pre_exec(|| SigSet::empty().thread_set_mask().map_err(io::Error::from));
    }
    launch.configure(&mut command);
    Ok((command, program))
}

/// An error with its chain of sources, on one line (for responses and logs).
pub fn report(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Feeds `input` to the child's stdin and collects its stdout and stderr until both close.
fn exchange_stdio(mut child: Child, input: &[u8]) -> (Child, Vec<u8>, Vec<u8>) {
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let (out, err) = thread::scope(|scope| {
        scope.spawn(move || {
            if let Some(mut stdin) = stdin {
                // A command that exits without reading its input closes the pipe: not an error.
                if let Err(e) = stdin.write_all(input) {
                    tracing::debug!(error = %e, "stdin not fully consumed");
                }
            }
        });
        let out = scope.spawn(move || stdout.map(capture).unwrap_or_default());
        let err = stderr.map(capture).unwrap_or_default();
        (out.join().unwrap_or_default(), err)
    });
    (child, out, err)
}

/// Reads `pipe` to its end, keeping the first [`MAX_CAPTURE`] bytes.
fn capture(mut pipe: impl Read) -> Vec<u8> {
    let mut kept = Vec::new();
    if let Err(e) = (&mut pipe).take(MAX_CAPTURE as u64).read_to_end(&mut kept) {
        tracing::warn!(error = %e, "reading command output");
        return kept;
    }
    match io::copy(&mut pipe, &mut io::sink()) {
        Ok(0) => {}
        Ok(dropped) => tracing::warn!(dropped, "command output over the capture limit was dropped"),
        Err(e) => tracing::warn!(error = %e, "draining command output"),
    }
    kept
}

fn error_response(exit_code: i32, error: String) -> RunCommandResponse {
    tracing::warn!(%error, "command not run");
    RunCommandResponse {
        exit_code,
        error,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reaper::DirectWaiter;

    fn request(args: &[&str]) -> RunCommandRequest {
        RunCommandRequest {
            args: args.iter().map(|a| a.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn test_run_command_tty_gives_a_terminal() {
        let mut req = request(&[
            "sh",
            "-c",
            "tty >/dev/null && echo tty-ok; echo err >&2; exit 3",
        ]);
        req.tty = true;
        let resp = run_command(&req, &DirectWaiter);
        assert_eq!(resp.exit_code, 3, "{resp:?}");
        assert_eq!(String::from_utf8_lossy(&resp.stdout), "tty-ok\r\nerr\r\n");
        assert!(resp.stderr.is_empty());
        let plain = run_command(&request(&["tty"]), &DirectWaiter);
        assert_ne!(
            plain.exit_code, 0,
            "without tty, stdin is a pipe: {plain:?}"
        );
    }

    #[test]
    fn test_run_command_exit_7_captures_all_fields() {
        let req = request(&["sh", "-c", "echo out; echo err >&2; exit 7"]);

        let resp = run_command(&req, &DirectWaiter);

        assert_eq!(resp.stdout, b"out\n");
        assert_eq!(resp.stderr, b"err\n");
        assert_eq!(resp.exit_code, 7);
        assert_eq!(resp.signal, 0);
        assert_eq!(resp.error, "");
    }

    #[test]
    fn test_run_command_stdin_env_cwd_passed() {
        let mut req = request(&["sh", "-c", "cat; echo \"$GREETING $PATH\"; pwd"]);
        req.stdin = b"input\n".to_vec();
        req.env = vec!["GREETING=hello".to_string()];
        req.cwd = "/tmp".to_string();

        let resp = run_command(&req, &DirectWaiter);

        let expected = format!("input\nhello {DEFAULT_PATH}\n/tmp\n");
        assert_eq!(String::from_utf8_lossy(&resp.stdout), expected);
        assert_eq!(resp.exit_code, 0);
    }

    #[test]
    fn test_run_command_large_output_both_pipes_no_deadlock() {
        let req = request(&[
            "sh",
            "-c",
            "head -c 3000000 /dev/zero; head -c 3000000 /dev/zero >&2",
        ]);

        let resp = run_command(&req, &DirectWaiter);

        assert_eq!(resp.stdout.len(), 3_000_000);
        assert_eq!(resp.stderr.len(), 3_000_000);
        assert_eq!(resp.exit_code, 0);
    }

    #[test]
    fn test_run_command_output_over_limit_truncated() {
        let req = request(&["head", "-c", "8000000", "/dev/zero"]);

        let resp = run_command(&req, &DirectWaiter);

        assert_eq!(resp.stdout.len(), MAX_CAPTURE);
        assert_eq!(resp.exit_code, 0);
    }

    #[test]
    fn test_run_command_blocked_signals_in_parent_unblocked_in_child() {
        let req = request(&["sh", "-c", "grep SigBlk /proc/self/status"]);
        let mut blocked = SigSet::empty();
        blocked.add(nix::sys::signal::Signal::SIGTERM);

        // A fresh thread, so that the mask does not leak into other tests.
        let resp = std::thread::spawn(move || {
            blocked.thread_block().unwrap();
            run_command(&req, &DirectWaiter)
        })
        .join()
        .unwrap();

        assert_eq!(
            String::from_utf8_lossy(&resp.stdout),
            "SigBlk:\t0000000000000000\n"
        );
    }

    #[test]
    fn test_run_command_numeric_user_runs_as_it_with_home() {
        // Like the agent, needs root: changing uid and groups is privileged.
        let mut req = request(&["sh", "-c", "echo $(id -u):$(id -g):$(id -G):$HOME"]);
        req.user = "4242:4343".to_string();

        let resp = run_command(&req, &DirectWaiter);

        assert_eq!(String::from_utf8_lossy(&resp.stdout), "4242:4343:4343:/\n");
        assert_eq!(resp.exit_code, 0, "{}", resp.error);
    }

    #[test]
    fn test_run_command_killed_reports_signal() {
        let req = request(&["sh", "-c", "kill -KILL $$"]);

        let resp = run_command(&req, &DirectWaiter);

        assert_eq!(resp.signal, 9);
        assert_eq!(resp.exit_code, 0);
    }

    #[test]
    fn test_run_command_missing_program_not_found() {
        let req = request(&["no-such-command-in-any-zone"]);

        let resp = run_command(&req, &DirectWaiter);

        assert_eq!(resp.exit_code, EXIT_NOT_FOUND);
        assert!(resp.error.contains("command not found"), "{}", resp.error);
    }

    #[test]
    fn test_run_command_empty_args_error() {
        let resp = run_command(&request(&[]), &DirectWaiter);

        assert_eq!(resp.exit_code, EXIT_CANNOT_RUN);
        assert!(resp.error.contains("no args"), "{}", resp.error);
    }

    #[test]
    fn test_run_command_bad_env_entry_error() {
        let mut req = request(&["true"]);
        req.env = vec!["NOEQUALS".to_string()];

        let resp = run_command(&req, &DirectWaiter);

        assert_eq!(resp.exit_code, EXIT_CANNOT_RUN);
        assert!(resp.error.contains("KEY=VALUE"), "{}", resp.error);
    }

    #[test]
    fn test_run_command_missing_cwd_error() {
        let mut req = request(&["true"]);
        req.cwd = "/no/such/dir".to_string();

        let resp = run_command(&req, &DirectWaiter);

        assert_eq!(resp.exit_code, EXIT_CANNOT_RUN);
        assert!(resp.error.contains("not a directory"), "{}", resp.error);
    }
}
