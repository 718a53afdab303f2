//! Detached zones: `zonectl run -d` and the hidden `zonectl supervise` that keeps them going.
//!
//! `run -d` checks and resolves everything the zone needs (so mistakes are reported at once),
//! creates the state directory with `state.json` (status `starting`), then re-executes zonectl
//! as `zonectl supervise --zone-id ID <the same run arguments>` in a new session with its
//! output going to `supervisor.log`, prints the id and returns. The supervisor runs the zone
//! with the same steps as a foreground `run` (`run::prepare`, `launch`, `drive`), but saves
//! the command's output to `stdout.log`/`stderr.log` and records the outcome in `state.json`.
//! SIGTERM (from `zonectl stop`) makes it send SIGTERM to the VMM, which powers the guest off.

use std::env;
use std::fs;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use anyhow::Context;
use clap::Args;
use nix::sys::signal::{SigSet, Signal};

use crate::attach::{Attach, Sink};
use crate::cli::RunArgs;
use crate::interrupt::Interrupt;
use crate::run::{self, Outcome};
use crate::zone_dir::ZoneDir;
use crate::zone_state::{Status, ZoneState};

/// Run a detached zone's command and record its outcome (started by `zonectl run -d`).
#[derive(Debug, Args)]
pub struct SuperviseArgs {
    /// The zone, whose state directory `run -d` created.
    #[arg(long, value_name = "ID")]
    pub zone_id: String,

    #[command(flatten)]
    pub run: RunArgs,
}

/// `zonectl run -d`: starts the supervisor and prints the zone id.
pub fn start_detached(args: &RunArgs) -> anyhow::Result<i32> {
    run::check_name_free(args)?;
    let prepared = run::prepare(args)?;
    let mut zone =
        ZoneDir::create(&args.state_root).context("creating the zone's state directory")?;
    let mut state = run::new_state(&zone, args, &prepared);
    state.supervisor_pid = None;
    state.save(zone.path())?;

    let log = fs::File::create(zone.supervisor_log())
        .with_context(|| format!("creating {}", zone.supervisor_log().display()))?;
    let log_err = log.try_clone().context("duplicating the supervisor log")?;
    let exe = env::current_exe().context("finding zonectl's own executable")?;
    // argv[1] is `run` (zonectl has no options before the verb); the rest are run's arguments.
    let run_args = env::args_os().skip(2);
    let mut command = Command::new(&exe);
    command
        .arg("supervise")
        .arg("--zone-id")
        .arg(zone.id())
        .args(run_args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    // SAFETY: the closure runs in the forked child before exec and only calls setsid(2) and
    // pthread_sigmask(3), which are async-signal-safe; it shares no memory with the parent.
    unsafe {
        command.pre_exec(|| {
            // Its own session: the terminal's signals and hangup do not reach it.
            nix::unistd::setsid()?;
            SigSet::empty().thread_set_mask()?;
            Ok(())
        });
    }
    let child = command
        .spawn()
        .with_context(|| format!("starting the zone supervisor {}", exe.display()))?;
    tracing::debug!(zone = %zone.id(), pid = child.id(), "supervisor started");
    zone.set_remove_on_drop(false);
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{}", zone.id()).context("writing the zone id")?;
    Ok(0)
}

/// `zonectl supervise`: runs the zone to its end and records how it went.
pub fn run(args: SuperviseArgs) -> anyhow::Result<i32> {
    // Armed at once: `zonectl stop` may arrive before the VMM exists.
    let interrupt =
        Interrupt::install_stopping_with(Signal::SIGTERM).context("installing signal handling")?;
    let _armed = interrupt.arm();
    let zone = ZoneDir::open(&args.run.state_root, &args.zone_id);
    let span = tracing::info_span!("zone", zone = %zone.id());
    let _entered = span.enter();
    let mut state = ZoneState::load(zone.path())?;
    state.supervisor_pid = i32::try_from(std::process::id()).ok();
    state.save(zone.path())?;

    let result = supervise(&zone, &args.run, &interrupt, &mut state);
    if let Err(e) = &result {
        state.status = Status::Failed;
        state.error = Some(format!("{e:#}"));
    }
    tracing::info!(status = ?state.status, exit_code = ?state.exit_code, "zone ended");
    state.save(zone.path())?;
    if state.auto_remove {
        zone.remove()
            .with_context(|| format!("removing {}", zone.path().display()))?;
    }
    result.map(|()| 0)
}

fn supervise(
    zone: &ZoneDir,
    args: &RunArgs,
    interrupt: &Interrupt,
    state: &mut ZoneState,
) -> anyhow::Result<()> {
    let prepared = run::prepare(args)?;
    // Before the VMM: dropped after it, when the tap has gone with the VMM.
    let mut network = run::set_up_network(zone, args, state)?;
    let (listener, mut vmm) = run::launch(zone, args, &prepared, state, network.as_mut())?;
    interrupt.set_vmm(Some(vmm.pid()));
    let attach = Attach {
        stdin: false,
        tty: false,
        sink: Sink::Files {
            stdout: zone.stdout_log(),
            stderr: zone.stderr_log(),
        },
    };
    let outcome = run::drive(
        zone,
        &listener,
        &mut vmm,
        interrupt,
        prepared.create,
        &attach,
        network.as_ref(),
        &prepared.identity,
    );
    interrupt.set_vmm(None);
    match outcome {
        Outcome::Finished(end) => {
            if !end.error.is_empty() {
                let mut log = fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(zone.stderr_log())
                    .with_context(|| format!("opening {}", zone.stderr_log().display()))?;
                writeln!(log, "zonectl: {}", end.error)
                    .with_context(|| format!("writing {}", zone.stderr_log().display()))?;
            }
            state.status = Status::Exited;
            state.exit_code = Some(end.status());
        }
        Outcome::Interrupted(signal) => {
            tracing::info!(%signal, "stopped");
            state.status = Status::Stopped;
        }
        Outcome::VmmDied(status, e) => {
            state.status = Status::VmmDied;
            state.error = Some(format!("the VMM exited ({status}): {e:#}"));
        }
        Outcome::Failed(e) => {
            run::report_zone_failure(zone, &mut vmm, None);
            state.status = Status::Failed;
            state.error = Some(format!("{e:#}"));
        }
    }
    Ok(())
}
