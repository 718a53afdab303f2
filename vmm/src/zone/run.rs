//! Running a zone: vCPU threads, the wait for the end, and an orderly stop.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::signal::Killable;

use super::exit::{ExitSignal, ZoneExit};
use super::{signals, StopSignal, Zone, ZoneError};
use crate::devices::bus::Bus;
use crate::devices::power::PowerEvent;
use crate::hypervisor::{Vcpu, VcpuExit};

/// Everything a vCPU thread needs.
struct VcpuContext {
    vcpu: Vcpu,
    pio: Bus,
    mmio: Bus,
    exit: Arc<ExitSignal>,
    stop: Arc<AtomicBool>,
    started: Instant,
}

impl Zone {
    /// Runs the zone until it ends; returns why it ended. `stop` comes from
    /// [`super::install_signal_handlers`], called before anything was created.
    pub fn run(mut self, stop: &StopSignal) -> Result<ZoneExit, ZoneError> {
        let stop_evt = &stop.0;

        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for vcpu in std::mem::take(&mut self.vcpus) {
            let ctx = VcpuContext {
                vcpu,
                pio: self.pio.clone(),
                mmio: self.mmio.clone(),
                exit: self.exit.clone(),
                stop: stop.clone(),
                started: self.started,
            };
            let name = format!("vcpu{}", ctx.vcpu.index());
            let handle = thread::Builder::new()
                .name(name)
                .spawn(move || run_vcpu(ctx))
                .map_err(ZoneError::Thread);
            match handle {
                Ok(handle) => threads.push(handle),
                Err(e) => {
                    stop_vcpus(&stop, threads);
                    return Err(e);
                }
            }
        }

        let reason = self.wait_for_exit(stop_evt);
        stop_vcpus(&stop, threads);
        for transport in &self.transports {
            transport
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .shutdown();
        }
        Ok(reason)
    }

    fn wait_for_exit(&self, stop_evt: &EventFd) -> ZoneExit {
        const EXIT: u64 = 0;
        const RESET: u64 = 1;
        const STOP: u64 = 2;
        const POWER: u64 = 3;
        let sources = [
            (self.exit.event().as_raw_fd(), EXIT),
            (self.reset_evt.as_raw_fd(), RESET),
            (stop_evt.as_raw_fd(), STOP),
            (self.power_evt.as_raw_fd(), POWER),
        ];
        let epoll = match Epoll::new() {
            Ok(epoll) => epoll,
            Err(e) => return ZoneExit::Failed(format!("cannot create epoll: {e}")),
        };
        for (fd, token) in sources {
            let event = EpollEvent::new(EventSet::IN, token);
            if let Err(e) = epoll.ctl(ControlOperation::Add, fd, event) {
                return ZoneExit::Failed(format!("cannot watch events: {e}"));
            }
        }
        let mut ready = [EpollEvent::default(); 4];
        loop {
            if let Some(reason) = self.exit.reason() {
                return reason;
            }
            let n = match epoll.wait(-1, &mut ready) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return ZoneExit::Failed(format!("waiting for the zone failed: {e}")),
            };
            for event in &ready[..n] {
                let reason = match event.data() {
                    RESET => ZoneExit::Reboot,
                    STOP => ZoneExit::Stopped,
                    POWER => match self.power_events.get() {
                        Some(PowerEvent::PowerOff) => ZoneExit::PowerOff,
                        Some(PowerEvent::Reboot) => ZoneExit::Reboot,
                        None => continue,
                    },
                    _ => continue,
                };
                self.exit.request(reason);
            }
        }
    }
}

fn run_vcpu(mut ctx: VcpuContext) {
    let index = ctx.vcpu.index();
    let mut first_entry = index == 0 && std::env::var_os("ZONE_VMM_TIMING").is_some();
    while !ctx.stop.load(Ordering::Acquire) {
        if first_entry {
            first_entry = false;
            report_first_entry(ctx.started);
        }
        let exit = match ctx.vcpu.run() {
            Ok(exit) => exit,
            Err(e) => {
                ctx.exit.request(ZoneExit::Failed(format!(
                    "vCPU {index}: {e}: {}",
                    source_of(&e)
                )));
                return;
            }
        };
        match exit {
            VcpuExit::IoIn(port, data) => {
                ctx.pio.read(u64::from(port), data);
            }
            VcpuExit::IoOut(port, data) => {
                ctx.pio.write(u64::from(port), data);
            }
            VcpuExit::MmioRead(addr, data) => {
                ctx.mmio.read(addr, data);
            }
            VcpuExit::MmioWrite(addr, data) => {
                ctx.mmio.write(addr, data);
            }
            VcpuExit::Interrupted => {}
            VcpuExit::PowerOff => return ctx.exit.request(ZoneExit::PowerOff),
            VcpuExit::Reset => return ctx.exit.request(ZoneExit::Reboot),
            // Said as such, so that a zone that vanishes mid-command is explained.
            VcpuExit::TripleFault => {
                return ctx.exit.request(ZoneExit::Failed(format!(
                    "vCPU {index}: the guest triple-faulted (KVM_EXIT_SHUTDOWN)"
                )))
            }
            VcpuExit::Halted => {
                return ctx.exit.request(ZoneExit::Failed(format!(
                    "vCPU {index} halted with no way to wake it"
                )))
            }
            VcpuExit::Failed(what) => {
                return ctx
                    .exit
                    .request(ZoneExit::Failed(format!("vCPU {index}: {what}")))
            }
        }
    }
}

fn source_of(e: &dyn std::error::Error) -> String {
    e.source().map(|s| s.to_string()).unwrap_or_default()
}

/// Prints how long it took from process start to the first guest entry (wall and CPU time).
fn report_first_entry(started: Instant) {
    let wall = started.elapsed();
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid `ts` we pass.
    let cpu = match unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) } {
        0 => Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32),
        _ => Duration::ZERO,
    };
    eprintln!(
        "zone-vmm: timing: first vCPU entry after {} us wall, {} us CPU",
        wall.as_micros(),
        cpu.as_micros()
    );
}

/// Tells every vCPU thread to stop, kicks them out of KVM_RUN until they do, and joins them.
fn stop_vcpus(stop: &AtomicBool, threads: Vec<JoinHandle<()>>) {
    stop.store(true, Ordering::Release);
    // A kick can land just before a thread re-enters KVM_RUN, so repeat until all are out.
    while threads.iter().any(|t| !t.is_finished()) {
        for thread in threads.iter().filter(|t| !t.is_finished()) {
            let _ = thread.kill(signals::kick_signal());
        }
        thread::sleep(Duration::from_millis(1));
    }
    for thread in threads {
        let _ = thread.join();
    }
}
