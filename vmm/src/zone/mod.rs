//! A zone: the VM, its vCPUs and devices, built from a [`ZoneConfig`] and run until the guest
//! powers off, reboots or fails.
//!
//! Threads: one per vCPU (runs `KVM_RUN`, handles port and MMIO exits on the buses), one worker
//! per virtio device (its queues and backend), and the main thread, which waits for the end.

mod exit;
mod run;
mod signals;
mod virtio_devices;
pub mod vtpm;

use std::fs::OpenOptions;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use vm_memory::{GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::arch::x86_64::acpi::layout::{
    POWER_PORTS_BASE, POWER_PORTS_LEN, RSDP_ADDR, TABLES_ADDR, TPM_EVENT_LOG_ADDR,
    TPM_EVENT_LOG_LEN,
};
use crate::arch::x86_64::acpi::{write_tables, AcpiError, DsdtDevice, TpmTable};
use crate::arch::x86_64::layout::{
    ram_ranges, SERIAL_GSI, VIRTIO_GSIS, VIRTIO_MMIO_SIZE, VIRTIO_MMIO_START,
};
use crate::boot::{self, BootError};
use crate::config::{ConsoleConfig, ZoneConfig};
use crate::devices::bus::{Bus, BusError};
use crate::devices::i8042::{I8042, I8042_BASE, I8042_LEN};
use crate::devices::power::{PowerDevice, PowerEvents};
use crate::devices::serial::{ConsoleSink, SerialDevice, COM1_BASE, COM1_LEN};
use crate::devices::tpm::{CRB_BASE, CRB_CTRL_AREA, CRB_SIZE};
use crate::devices::virtio::mmio::{MmioError, MmioTransport, REG_QUEUE_NOTIFY};
use crate::devices::virtio::{VirtioDevice, VirtioInterrupt};
use crate::hypervisor::{Vcpu, VcpuSetup, Vm, VmError};
use exit::ExitSignal;
pub use exit::ZoneExit;

#[derive(Debug, thiserror::Error)]
pub enum ZoneError {
    #[error("cannot allocate {mib} MiB of guest memory")]
    Memory {
        mib: u64,
        #[source]
        source: vm_memory::mmap::FromRangesError,
    },
    #[error(transparent)]
    Vm(#[from] VmError),
    #[error(transparent)]
    Boot(#[from] BootError),
    #[error("cannot write the ACPI tables")]
    Acpi(#[from] AcpiError),
    #[error("cannot open the console log {path}")]
    ConsoleLog {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create an event")]
    Event(#[source] std::io::Error),
    #[error("cannot place a device")]
    Bus(#[from] BusError),
    #[error("cannot set up a virtio transport")]
    Mmio(#[from] MmioError),
    #[error("too many virtio devices (at most {0})")]
    TooManyDevices(usize),
    #[error("{what}")]
    Device {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot set up vCPU {index}")]
    Vcpu {
        index: u8,
        #[source]
        source: crate::hypervisor::VcpuError,
    },
    #[error("cannot install signal handlers")]
    Signals(#[source] std::io::Error),
    #[error("cannot start a vCPU thread")]
    Thread(#[source] std::io::Error),
    #[error("cannot set up the vTPM")]
    Vtpm(#[from] vtpm::VtpmError),
}

/// Readable once SIGTERM, SIGINT or SIGHUP arrived.
#[derive(Debug)]
pub struct StopSignal(EventFd);

/// Routes stop signals to a [`StopSignal`] and installs the vCPU kick handler. Call it first
/// thing, so that a stop during start-up still ends in an orderly clean-up.
pub fn install_signal_handlers() -> Result<StopSignal, ZoneError> {
    let evt = EventFd::new(EFD_NONBLOCK).map_err(ZoneError::Event)?;
    signals::install(&evt).map_err(ZoneError::Signals)?;
    Ok(StopSignal(evt))
}

/// A built zone, ready to run.
#[derive(Debug)]
pub struct Zone {
    /// Kept until the zone ends: dropping it closes the VM.
    _vm: Vm,
    vcpus: Vec<Vcpu>,
    pio: Bus,
    mmio: Bus,
    transports: Vec<Arc<Mutex<MmioTransport>>>,
    /// Written by the i8042 when the guest resets the machine.
    reset_evt: EventFd,
    /// Written by the ACPI power device; `power_events` says what the guest asked for.
    power_evt: EventFd,
    power_events: PowerEvents,
    exit: Arc<ExitSignal>,
    started: Instant,
    /// Kept alive for the vCPU threads.
    _memory: GuestMemoryMmap<()>,
    /// The vTPM's state directory, removed (if the VMM made it) after the TPM device, and
    /// with it swtpm, is gone: fields drop in declaration order, so this stays last.
    _vtpm_state: Option<vtpm::StateDir>,
}

impl Zone {
    /// Builds the VM, devices and vCPUs and loads the kernel.
    pub fn build(config: &ZoneConfig, started: Instant) -> Result<Self, ZoneError> {
        // Declared first so that, on an error, it is dropped (its directory removed) after
        // the bus holding the TPM device, and with it swtpm.
        let mut vtpm_state: Option<vtpm::StateDir> = None;
        let mem_size = config.memory_mib << 20;
        let ranges: Vec<_> = ram_ranges(mem_size)
            .into_iter()
            .map(|(start, len)| (GuestAddress(start), len as usize))
            .collect();
        let memory =
            GuestMemoryMmap::<()>::from_ranges(&ranges).map_err(|source| ZoneError::Memory {
                mib: config.memory_mib,
                source,
            })?;
        let mut vm = Vm::new()?;
        vm.map_memory(&memory)?;

        let event = || EventFd::new(EFD_NONBLOCK).map_err(ZoneError::Event);
        let mut pio = Bus::new();
        let serial_irq = event()?;
        vm.register_irqfd(&serial_irq, SERIAL_GSI)?;
        let sink = match &config.console {
            ConsoleConfig::Stdout => ConsoleSink::Stdout(std::io::stdout()),
            ConsoleConfig::Off => ConsoleSink::Discard,
            ConsoleConfig::File(path) => ConsoleSink::File {
                file: OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| ZoneError::ConsoleLog {
                        path: path.clone(),
                        source,
                    })?,
                written: 0,
            },
        };
        pio.insert(
            Arc::new(Mutex::new(SerialDevice::new(serial_irq, sink))),
            COM1_BASE,
            COM1_LEN,
        )?;
        let reset_evt = event()?;
        let i8042 = I8042::new(reset_evt.try_clone().map_err(ZoneError::Event)?);
        pio.insert(Arc::new(Mutex::new(i8042)), I8042_BASE, I8042_LEN)?;
        let power_evt = event()?;
        let power = PowerDevice::new(power_evt.try_clone().map_err(ZoneError::Event)?);
        let power_events = power.events();
        pio.insert(
            Arc::new(Mutex::new(power)),
            POWER_PORTS_BASE,
            POWER_PORTS_LEN,
        )?;

        let mut mmio = Bus::new();
        let mut transports = Vec::new();
        let mut acpi_devices = vec![DsdtDevice::Serial {
            port: COM1_BASE as u16,
            gsi: SERIAL_GSI,
        }];
        for device in virtio_devices::create(config)? {
            let index = transports.len();
            let gsi = *VIRTIO_GSIS
                .get(index)
                .ok_or(ZoneError::TooManyDevices(VIRTIO_GSIS.len()))?;
            let base = VIRTIO_MMIO_START + index as u64 * VIRTIO_MMIO_SIZE;
            let transport = attach_virtio(&vm, &memory, device, gsi, base)?;
            let transport = Arc::new(Mutex::new(transport));
            mmio.insert(transport.clone(), base, VIRTIO_MMIO_SIZE)?;
            transports.push(transport);
            // Declared in the DSDT, where the kernel maps the GSI to an IRQ it can request.
            acpi_devices.push(DsdtDevice::VirtioMmio {
                base: base as u32,
                len: VIRTIO_MMIO_SIZE as u32,
                gsi,
            });
        }

        let entry = boot::load(
            &memory,
            mem_size,
            &config.kernel,
            config.initrd.as_deref(),
            &config.cmdline,
        )?;
        // Measured boot: the kernel, initrd and command line are in memory, no vCPU exists.
        let mut tpm_table = None;
        if let Some(tpm) = &config.tpm {
            let (crb, state) = vtpm::start(config, tpm, &memory)?;
            vtpm_state = Some(state);
            mmio.insert(Arc::new(Mutex::new(crb)), CRB_BASE, CRB_SIZE)?;
            acpi_devices.push(DsdtDevice::Tpm {
                base: CRB_BASE as u32,
                len: CRB_SIZE as u32,
            });
            tpm_table = Some(TpmTable {
                control_area: CRB_CTRL_AREA,
                log_addr: TPM_EVENT_LOG_ADDR,
                log_len: TPM_EVENT_LOG_LEN as u32,
            });
        }
        write_tables(
            &memory,
            GuestAddress(RSDP_ADDR),
            GuestAddress(TABLES_ADDR),
            config.vcpus,
            &acpi_devices,
            tpm_table,
        )?;
        let mut vcpus = Vec::with_capacity(usize::from(config.vcpus));
        for index in 0..config.vcpus {
            vcpus.push(vm.create_vcpu(index, config.vcpus)?);
        }
        vcpus[0]
            .setup_boot_state(
                &memory,
                VcpuSetup {
                    entry: entry.entry,
                    cr3: entry.cr3,
                },
            )
            .map_err(|source| ZoneError::Vcpu { index: 0, source })?;

        Ok(Self {
            _vm: vm,
            vcpus,
            pio,
            mmio,
            transports,
            reset_evt,
            power_evt,
            power_events,
            exit: Arc::new(ExitSignal::new().map_err(ZoneError::Event)?),
            started,
            _memory: memory,
            _vtpm_state: vtpm_state,
        })
    }
}

/// Puts `device` behind a virtio-mmio window at `base`, interrupting on `gsi`.
fn attach_virtio(
    vm: &Vm,
    memory: &GuestMemoryMmap<()>,
    device: Box<dyn VirtioDevice>,
    gsi: u32,
    base: u64,
) -> Result<MmioTransport, ZoneError> {
    let irq = EventFd::new(EFD_NONBLOCK).map_err(ZoneError::Event)?;
    vm.register_irqfd(&irq, gsi)?;
    let interrupt = Arc::new(VirtioInterrupt::new(Box::new(irq)));
    let transport = MmioTransport::new(device, memory.clone(), interrupt)?;
    for (queue, evt) in (0u32..).zip(transport.queue_events()) {
        vm.register_ioevent(evt, base + REG_QUEUE_NOTIFY, queue)?;
    }
    Ok(transport)
}
