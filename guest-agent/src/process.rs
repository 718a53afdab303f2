//! One process of a container, from creation to exit: its command, its standard streams and
//! its end.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::sync::watch;

use crate::containers::lock;
use crate::reaper::{Exit, ExitOutcome, Reaper};
use crate::request_error::RequestError;
use crate::stdio::{self, OutputReceiver, OutputSender, Stdin};
use crate::tty::{self, Pty};

/// Exit status of a command that was not found, as a shell reports it.
pub const EXIT_NOT_FOUND: i32 = 127;
/// Exit status of a command that was found but could not be run.
pub const EXIT_CANNOT_RUN: i32 = 126;

/// Everything needed to start a process, checked and resolved when it was created.
#[derive(Debug)]
pub struct ProcessPlan {
    /// Placement (root, user, directory, environment) is already configured on it.
    pub command: Command,
    /// args[0], for messages.
    pub program: String,
    pub terminal: bool,
    pub stdin: bool,
    /// Where to open a terminal: the container's own devpts, so the process sees it.
    pub ptmx: PathBuf,
}

/// How a process ended, as the host sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessExit {
    pub exit: Exit,
    /// Why the process could not be started; empty when it ran.
    pub error: String,
}

/// Which output stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Stdout,
    Stderr,
}

#[derive(Debug)]
enum State {
    Created {
        plan: Box<ProcessPlan>,
        stdout: OutputSender,
        stderr: OutputSender,
    },
    Running {
        pid: u32,
    },
    Exited,
}

#[derive(Debug)]
pub struct Process {
    name: String,
    state: Mutex<State>,
    stdout: Mutex<Option<OutputReceiver>>,
    stderr: Mutex<Option<OutputReceiver>>,
    stdin: Arc<Mutex<Option<Stdin>>>,
    terminal: Mutex<Option<File>>,
    exited: watch::Sender<Option<ProcessExit>>,
}

impl Process {
    /// A process that waits for [`Process::start`]; `name` is for messages ("main", "exec 3").
    pub fn new(name: String, plan: ProcessPlan) -> Self {
        let (stdout_sender, stdout) = stdio::output_channel();
        let (stderr_sender, stderr) = stdio::output_channel();
        Self {
            name,
            state: Mutex::new(State::Created {
                plan: Box::new(plan),
                stdout: stdout_sender,
                stderr: stderr_sender,
            }),
            stdout: Mutex::new(Some(stdout)),
            stderr: Mutex::new(Some(stderr)),
            stdin: Arc::new(Mutex::new(None)),
            terminal: Mutex::new(None),
            exited: watch::Sender::new(None),
        }
    }

    /// Starts the process and returns its pid. A process that cannot be started counts as
    /// exited with [`EXIT_NOT_FOUND`] or [`EXIT_CANNOT_RUN`], and the error says why.
    pub fn start(self: &Arc<Self>, reaper: &Reaper) -> Result<u32, RequestError> {
        let mut state = lock(&self.state);
        let (plan, stdout, stderr) = match std::mem::replace(&mut *state, State::Exited) {
            State::Created {
                plan,
                stdout,
                stderr,
            } => (plan, stdout, stderr),
            other => {
                *state = other;
                return Err(RequestError::FailedPrecondition(format!(
                    "{} was already started",
                    self.name
                )));
            }
        };
        let program = plan.program.clone();
        match self.spawn(*plan, stdout, stderr, reaper) {
            Ok((pid, exit)) => {
                *state = State::Running { pid };
                drop(state);
                let process = Arc::clone(self);
                tokio::spawn(async move {
                    let exit = exit.await.unwrap_or(Exit {
                        outcome: ExitOutcome::Exited(EXIT_CANNOT_RUN),
                        at: SystemTime::now(),
                    });
                    process.finish(exit, String::new());
                });
                tracing::info!(process = %self.name, pid, %program, "started");
                Ok(pid)
            }
            Err(e) => {
                let (code, error) = match e.kind() {
                    io::ErrorKind::NotFound => {
                        (EXIT_NOT_FOUND, format!("{program}: command not found"))
                    }
                    _ => (EXIT_CANNOT_RUN, format!("{program}: {e}")),
                };
                drop(state);
                tracing::warn!(process = %self.name, %error, "not started");
                let exit = Exit {
                    outcome: ExitOutcome::Exited(code),
                    at: SystemTime::now(),
                };
                self.finish(exit, error.clone());
                Err(RequestError::FailedPrecondition(error))
            }
        }
    }

    fn spawn(
        &self,
        mut plan: ProcessPlan,
        stdout: OutputSender,
        stderr: OutputSender,
        reaper: &Reaper,
    ) -> io::Result<(u32, tokio::sync::oneshot::Receiver<Exit>)> {
        let command = &mut plan.command;
        if plan.terminal {
            let pty = Pty::open(&plan.ptmx)?;
            pty.attach(command)?;
            let (child, exit) = reaper.spawn(command)?;
            drop(plan);
            let master = pty.into_master();
            stdio::spawn_output_pump(&self.name, master.try_clone()?, stdout)?;
            // A terminal always takes input; what the host never writes is never read.
            *lock(&self.stdin) = Some(Stdin::terminal(master.try_clone()?));
            *lock(&self.terminal) = Some(master);
            drop(stderr);
            return Ok((child.id(), exit));
        }
        command
            .stdin(if plan.stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let (mut child, exit) = reaper.spawn(command)?;
        if let Some(input) = child.stdin.take() {
            *lock(&self.stdin) = Some(Stdin::pipe(File::from(OwnedFd::from(input))));
        }
        if let Some(out) = child.stdout.take() {
            stdio::spawn_output_pump(&self.name, File::from(OwnedFd::from(out)), stdout)?;
        }
        if let Some(err) = child.stderr.take() {
            stdio::spawn_output_pump(&self.name, File::from(OwnedFd::from(err)), stderr)?;
        }
        Ok((child.id(), exit))
    }

    fn finish(&self, exit: Exit, error: String) {
        *lock(&self.state) = State::Exited;
        tracing::info!(process = %self.name, outcome = ?exit.outcome, "exited");
        self.exited.send_replace(Some(ProcessExit { exit, error }));
    }

    /// Waits until the process has exited.
    pub async fn wait(&self) -> ProcessExit {
        let mut exited = self.exited.subscribe();
        let exit = match exited.wait_for(Option::is_some).await {
            Ok(exit) => exit.clone(),
            Err(_) => None,
        };
        // The sender lives as long as `self`, so the wait ends only with an exit.
        match exit {
            Some(exit) => exit,
            None => std::future::pending().await,
        }
    }

    /// How it ended, if it has.
    pub fn exit(&self) -> Option<ProcessExit> {
        self.exited.borrow().clone()
    }

    /// The pid while the process runs.
    pub fn pid(&self) -> Option<u32> {
        match *lock(&self.state) {
            State::Running { pid } => Some(pid),
            _ => None,
        }
    }

    pub fn signal(&self, signal: Signal) -> Result<(), RequestError> {
        match *lock(&self.state) {
            State::Running { pid } => {
                let pid = i32::try_from(pid)
                    .map_err(|_| RequestError::Internal(format!("{} has pid {pid}", self.name)))?;
                kill(Pid::from_raw(pid), signal).map_err(|e| {
                    RequestError::Internal(format!("signalling {} (pid {pid}): {e}", self.name))
                })
            }
            State::Created { .. } => Err(RequestError::Unavailable(format!(
                "{} has not been started",
                self.name
            ))),
            State::Exited => Err(RequestError::FailedPrecondition(format!(
                "{} has exited",
                self.name
            ))),
        }
    }

    /// The receiving end of one output stream; there is one reader per stream.
    pub fn take_output(&self, output: Output) -> Result<OutputReceiver, RequestError> {
        let slot = match output {
            Output::Stdout => &self.stdout,
            Output::Stderr => &self.stderr,
        };
        lock(slot).take().ok_or_else(|| {
            RequestError::FailedPrecondition(format!(
                "{}'s {output:?} already has a reader",
                self.name
            ))
        })
    }

    /// Writes to the process's stdin, blocking (off the async threads) while it does not read.
    pub async fn write_stdin(&self, data: Vec<u8>) -> Result<(), RequestError> {
        let stdin = Arc::clone(&self.stdin);
        let name = self.name.clone();
        tokio::task::spawn_blocking(move || match lock(&stdin).as_mut() {
            Some(stdin) => stdin
                .write_all(&data)
                .map_err(|e| RequestError::FailedPrecondition(format!("{name}'s stdin: {e}"))),
            None => Err(RequestError::FailedPrecondition(format!(
                "{name}'s stdin is closed, or was not asked for (ProcessSpec.stdin), or it has \
                 not been started"
            ))),
        })
        .await
        .map_err(|e| RequestError::Internal(format!("stdin writer: {e}")))?
    }

    /// Closes the process's stdin; closing it again is not an error.
    pub async fn close_stdin(&self) -> Result<(), RequestError> {
        let stdin = Arc::clone(&self.stdin);
        let name = self.name.clone();
        tokio::task::spawn_blocking(move || match lock(&stdin).take() {
            Some(stdin) => stdin
                .close()
                .map_err(|e| RequestError::FailedPrecondition(format!("{name}'s stdin: {e}"))),
            None => Ok(()),
        })
        .await
        .map_err(|e| RequestError::Internal(format!("stdin writer: {e}")))?
    }

    pub fn resize(&self, rows: u16, columns: u16) -> Result<(), RequestError> {
        match lock(&self.terminal).as_ref() {
            Some(master) => tty::resize(master, rows, columns).map_err(|e| {
                RequestError::Internal(format!("resizing {}'s terminal: {e}", self.name))
            }),
            None => Err(RequestError::FailedPrecondition(format!(
                "{} has no terminal (or has not been started)",
                self.name
            ))),
        }
    }
}
