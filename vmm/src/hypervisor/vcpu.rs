//! A vCPU: its entry state for the Linux 64-bit boot protocol and the run loop's exits.

use kvm_bindings::{kvm_fpu, kvm_msr_entry, kvm_regs, CpuId, Msrs};
use kvm_ioctls::VcpuFd;
use vm_memory::{Bytes, GuestAddress, GuestMemory};

use crate::arch::x86_64::gdt::{segment, BOOT_CS, BOOT_DS, BOOT_GDT, BOOT_TSS};
use crate::arch::x86_64::layout::{BOOT_STACK_POINTER, GDT_START, ZERO_PAGE_START};

const X86_CR0_PE: u64 = 0x1;
const X86_CR0_ET: u64 = 0x10;
const X86_CR0_PG: u64 = 0x8000_0000;
const X86_CR4_PAE: u64 = 0x20;
const EFER_LME: u64 = 0x100;
const EFER_LMA: u64 = 0x400;

const MSR_IA32_TSC: u32 = 0x10;
const MSR_IA32_SYSENTER_CS: u32 = 0x174;
const MSR_IA32_SYSENTER_ESP: u32 = 0x175;
const MSR_IA32_SYSENTER_EIP: u32 = 0x176;
const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
const MISC_ENABLE_FAST_STRING: u64 = 0x1;
const MSR_MTRR_DEF_TYPE: u32 = 0x2ff;
const MTRR_ENABLE_WRITEBACK: u64 = (1 << 11) | 6;
const MSR_STAR: u32 = 0xc000_0081;
const MSR_LSTAR: u32 = 0xc000_0082;
const MSR_CSTAR: u32 = 0xc000_0083;
const MSR_SYSCALL_MASK: u32 = 0xc000_0084;
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;

/// Local APIC register offsets and delivery modes (Intel SDM vol. 3, 11.5.1).
const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_MODE_NMI: u32 = 0x4;
const APIC_MODE_EXTINT: u32 = 0x7;

#[derive(Debug, thiserror::Error)]
pub enum VcpuError {
    #[error("cannot create the vCPU")]
    Create(#[source] kvm_ioctls::Error),
    #[error("cannot set CPUID")]
    SetCpuid(#[source] kvm_ioctls::Error),
    #[error("cannot set up the local APIC")]
    Lapic(#[source] kvm_ioctls::Error),
    #[error("cannot set MSRs")]
    SetMsrs(#[source] kvm_ioctls::Error),
    #[error("cannot set FPU state")]
    SetFpu(#[source] kvm_ioctls::Error),
    #[error("cannot set registers")]
    SetRegs(#[source] kvm_ioctls::Error),
    #[error("cannot set special registers")]
    SetSregs(#[source] kvm_ioctls::Error),
    #[error("cannot write the GDT into guest memory")]
    WriteGdt(#[source] vm_memory::GuestMemoryError),
    #[error("KVM_RUN failed")]
    Run(#[source] kvm_ioctls::Error),
}

/// Where the boot vCPU starts.
#[derive(Clone, Copy, Debug)]
pub struct VcpuSetup {
    pub entry: u64,
    pub cr3: u64,
}

/// Why a vCPU stopped running guest code.
#[derive(Debug)]
pub enum VcpuExit<'a> {
    IoIn(u16, &'a mut [u8]),
    IoOut(u16, &'a [u8]),
    MmioRead(u64, &'a mut [u8]),
    MmioWrite(u64, &'a [u8]),
    /// The guest asked for a power off (KVM system event).
    PowerOff,
    /// A reset system event: the guest wants to restart.
    Reset,
    /// KVM_EXIT_SHUTDOWN: the guest triple-faulted (a reset no guest asks for on purpose:
    /// Linux resets zones through the keyboard controller).
    TripleFault,
    /// KVM_RUN was interrupted by a signal; the caller checks whether to stop.
    Interrupted,
    /// The guest halted with no in-kernel irqchip to wake it (does not happen with ours).
    Halted,
    /// KVM could not run the guest; the string says what KVM reported.
    Failed(String),
}

#[derive(Debug)]
pub struct Vcpu {
    fd: VcpuFd,
    index: u8,
}

impl Vcpu {
    pub(super) fn new(fd: VcpuFd, index: u8, cpuid: &CpuId) -> Result<Self, VcpuError> {
        fd.set_cpuid2(cpuid).map_err(VcpuError::SetCpuid)?;
        let vcpu = Self { fd, index };
        vcpu.setup_lapic()?;
        vcpu.setup_msrs()?;
        vcpu.setup_fpu()?;
        Ok(vcpu)
    }

    pub fn index(&self) -> u8 {
        self.index
    }

    fn setup_lapic(&self) -> Result<(), VcpuError> {
        let mut lapic = self.fd.get_lapic().map_err(VcpuError::Lapic)?;
        for (reg, mode) in [(APIC_LVT0, APIC_MODE_EXTINT), (APIC_LVT1, APIC_MODE_NMI)] {
            let bytes: [u8; 4] = std::array::from_fn(|i| lapic.regs[reg + i] as u8);
            let value = (u32::from_le_bytes(bytes) & !0x700) | (mode << 8);
            for (dst, src) in lapic.regs[reg..reg + 4].iter_mut().zip(value.to_le_bytes()) {
                *dst = src as _;
            }
        }
        self.fd.set_lapic(&lapic).map_err(VcpuError::Lapic)
    }

    fn setup_msrs(&self) -> Result<(), VcpuError> {
        let entries: Vec<kvm_msr_entry> = [
            (MSR_IA32_SYSENTER_CS, 0),
            (MSR_IA32_SYSENTER_ESP, 0),
            (MSR_IA32_SYSENTER_EIP, 0),
            (MSR_STAR, 0),
            (MSR_CSTAR, 0),
            (MSR_KERNEL_GS_BASE, 0),
            (MSR_SYSCALL_MASK, 0),
            (MSR_LSTAR, 0),
            (MSR_IA32_TSC, 0),
            (MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING),
            (MSR_MTRR_DEF_TYPE, MTRR_ENABLE_WRITEBACK),
        ]
        .into_iter()
        .map(|(index, data)| kvm_msr_entry {
            index,
            data,
            ..Default::default()
        })
        .collect();
        let msrs = Msrs::from_entries(&entries)
            .map_err(|_| VcpuError::SetMsrs(kvm_ioctls::Error::new(libc::E2BIG)))?;
        let written = self.fd.set_msrs(&msrs).map_err(VcpuError::SetMsrs)?;
        if written != entries.len() {
            // KVM stops at the first MSR it refuses; the rest keep their reset values, which
            // the kernel copes with. Say which one so a boot problem can be traced.
            tracing::debug!(
                vcpu = self.index,
                refused = format_args!("{:#x}", entries[written].index),
                "KVM did not accept all boot MSRs"
            );
        }
        Ok(())
    }

    fn setup_fpu(&self) -> Result<(), VcpuError> {
        let fpu = kvm_fpu {
            fcw: 0x37f,
            mxcsr: 0x1f80,
            ..Default::default()
        };
        self.fd.set_fpu(&fpu).map_err(VcpuError::SetFpu)
    }

    /// Puts the boot vCPU in 64-bit mode at `setup.entry` as the boot protocol describes:
    /// paging on with `setup.cr3`, flat `__BOOT_CS`/`__BOOT_DS`, `rsi` at the zero page.
    pub fn setup_boot_state<M: GuestMemory>(
        &self,
        mem: &M,
        setup: VcpuSetup,
    ) -> Result<(), VcpuError> {
        for (i, entry) in BOOT_GDT.iter().enumerate() {
            mem.write_obj(*entry, GuestAddress(GDT_START + 8 * i as u64))
                .map_err(VcpuError::WriteGdt)?;
        }
        let mut sregs = self.fd.get_sregs().map_err(VcpuError::SetSregs)?;
        sregs.gdt.base = GDT_START;
        sregs.gdt.limit = (std::mem::size_of_val(&BOOT_GDT) - 1) as u16;
        sregs.idt.base = 0;
        sregs.idt.limit = 0;
        sregs.cs = segment(BOOT_CS);
        let data = segment(BOOT_DS);
        (sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss) = (data, data, data, data, data);
        sregs.tr = segment(BOOT_TSS);
        sregs.cr0 = X86_CR0_PE | X86_CR0_ET | X86_CR0_PG;
        sregs.cr3 = setup.cr3;
        sregs.cr4 = X86_CR4_PAE;
        sregs.efer = EFER_LME | EFER_LMA;
        self.fd.set_sregs(&sregs).map_err(VcpuError::SetSregs)?;

        let regs = kvm_regs {
            rflags: 0x2,
            rip: setup.entry,
            rsp: BOOT_STACK_POINTER,
            rbp: BOOT_STACK_POINTER,
            rsi: ZERO_PAGE_START,
            ..Default::default()
        };
        self.fd.set_regs(&regs).map_err(VcpuError::SetRegs)
    }

    /// Runs the guest until the next exit the VMM has to handle.
    pub fn run(&mut self) -> Result<VcpuExit<'_>, VcpuError> {
        use kvm_bindings::{
            KVM_SYSTEM_EVENT_CRASH, KVM_SYSTEM_EVENT_RESET, KVM_SYSTEM_EVENT_SHUTDOWN,
        };
        use kvm_ioctls::VcpuExit as Kvm;
        // Taken before `run()` borrows the fd, to read the union after an internal error.
        let kvm_run: *const kvm_bindings::kvm_run = self.fd.get_kvm_run();
        match self.fd.run() {
            Ok(Kvm::IoIn(port, data)) => Ok(VcpuExit::IoIn(port, data)),
            Ok(Kvm::IoOut(port, data)) => Ok(VcpuExit::IoOut(port, data)),
            Ok(Kvm::MmioRead(addr, data)) => Ok(VcpuExit::MmioRead(addr, data)),
            Ok(Kvm::MmioWrite(addr, data)) => Ok(VcpuExit::MmioWrite(addr, data)),
            Ok(Kvm::Hlt) => Ok(VcpuExit::Halted),
            Ok(Kvm::Shutdown) => Ok(VcpuExit::TripleFault),
            Ok(Kvm::SystemEvent(kind, _)) => Ok(match kind {
                KVM_SYSTEM_EVENT_SHUTDOWN => VcpuExit::PowerOff,
                KVM_SYSTEM_EVENT_RESET => VcpuExit::Reset,
                KVM_SYSTEM_EVENT_CRASH => VcpuExit::Failed("the guest reported a crash".into()),
                other => VcpuExit::Failed(format!("unknown system event {other}")),
            }),
            Ok(Kvm::FailEntry(reason, cpu)) => Ok(VcpuExit::Failed(format!(
                "KVM could not enter the guest (hardware reason {reason:#x}, cpu {cpu})"
            ))),
            Ok(Kvm::InternalError) => {
                // SAFETY: `kvm_run` points into the vCPU's kvm_run mapping, which lives as long
                // as `self.fd`; the exit holds no reference into it, and KVM_EXIT_INTERNAL_ERROR
                // fills the `internal` member, a u32 valid for any bit pattern.
                let suberror = unsafe { (*kvm_run).__bindgen_anon_1.internal.suberror };
                Ok(VcpuExit::Failed(match suberror {
                    1 => "KVM could not emulate a guest instruction".to_string(),
                    n => format!("KVM internal error (suberror {n})"),
                }))
            }
            Ok(other) => Ok(VcpuExit::Failed(format!("unexpected exit {other:?}"))),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                Ok(VcpuExit::Interrupted)
            }
            Err(e) => Err(VcpuError::Run(e)),
        }
    }
}
