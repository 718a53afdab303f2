//! The KVM VM: guest memory slots, the in-kernel IOAPIC/PIC/PIT, irqfds and ioeventfds.

use kvm_bindings::{kvm_pit_config, kvm_userspace_memory_region, CpuId, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{Cap, IoEventAddress, Kvm, VmFd};
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};
use vmm_sys_util::eventfd::EventFd;

use super::cpuid;
use super::vcpu::{Vcpu, VcpuError};
use crate::arch::x86_64::layout::KVM_TSS_ADDRESS;

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("cannot open /dev/kvm (is KVM enabled and do you have access to it?)")]
    OpenKvm(#[source] kvm_ioctls::Error),
    #[error("KVM API version {0} is not supported (need 12)")]
    ApiVersion(i32),
    #[error("KVM lacks a required capability: {0}")]
    MissingCapability(&'static str),
    #[error("cannot create the VM")]
    CreateVm(#[source] kvm_ioctls::Error),
    #[error("cannot set the TSS address")]
    SetTss(#[source] kvm_ioctls::Error),
    #[error("cannot create the in-kernel interrupt controller")]
    CreateIrqChip(#[source] kvm_ioctls::Error),
    #[error("cannot create the in-kernel PIT")]
    CreatePit(#[source] kvm_ioctls::Error),
    #[error("cannot read the CPUID KVM supports")]
    SupportedCpuid(#[source] kvm_ioctls::Error),
    #[error("cannot map guest memory slot {slot}")]
    MapMemory {
        slot: u32,
        #[source]
        source: kvm_ioctls::Error,
    },
    #[error("cannot register irqfd for GSI {gsi}")]
    Irqfd {
        gsi: u32,
        #[source]
        source: kvm_ioctls::Error,
    },
    #[error("cannot register ioeventfd at {addr:#x}")]
    Ioeventfd {
        addr: u64,
        #[source]
        source: kvm_ioctls::Error,
    },
    #[error("cannot create vCPU {index}")]
    CreateVcpu {
        index: u8,
        #[source]
        source: VcpuError,
    },
}

/// A KVM VM with its guest memory mapped.
#[derive(Debug)]
pub struct Vm {
    fd: VmFd,
    supported_cpuid: CpuId,
    tsc_deadline: bool,
    /// Kept so the host mappings outlive the memory slots that point at them.
    memory: Option<GuestMemoryMmap<()>>,
}

impl Vm {
    pub fn new() -> Result<Self, VmError> {
        let kvm = Kvm::new().map_err(VmError::OpenKvm)?;
        let api = kvm.get_api_version();
        if api != 12 {
            return Err(VmError::ApiVersion(api));
        }
        for (cap, name) in [
            (Cap::Irqchip, "in-kernel irqchip"),
            (Cap::Irqfd, "irqfd"),
            (Cap::Ioeventfd, "ioeventfd"),
            (Cap::UserMemory, "user memory"),
            (Cap::Pit2, "PIT2"),
        ] {
            if !kvm.check_extension(cap) {
                return Err(VmError::MissingCapability(name));
            }
        }
        let supported_cpuid = kvm
            .get_supported_cpuid(cpuid::MAX_ENTRIES)
            .map_err(VmError::SupportedCpuid)?;
        let tsc_deadline = kvm.check_extension(Cap::TscDeadlineTimer);
        let fd = kvm.create_vm().map_err(VmError::CreateVm)?;
        fd.set_tss_address(KVM_TSS_ADDRESS as usize)
            .map_err(VmError::SetTss)?;
        fd.create_irq_chip().map_err(VmError::CreateIrqChip)?;
        let pit = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        fd.create_pit2(pit).map_err(VmError::CreatePit)?;
        Ok(Self {
            fd,
            supported_cpuid,
            tsc_deadline,
            memory: None,
        })
    }

    /// Maps every region of `memory` into the guest.
    pub fn map_memory(&mut self, memory: &GuestMemoryMmap<()>) -> Result<(), VmError> {
        for (slot, region) in (0u32..).zip(memory.iter()) {
            let host =
                memory
                    .get_host_address(region.start_addr())
                    .map_err(|_| VmError::MapMemory {
                        slot,
                        source: kvm_ioctls::Error::new(libc::EFAULT),
                    })?;
            let mapping = kvm_userspace_memory_region {
                slot,
                flags: 0,
                guest_phys_addr: region.start_addr().0,
                memory_size: region.len(),
                userspace_addr: host as u64,
            };
            // SAFETY: `host` points at a live mmap of `region.len()` bytes owned by `memory`;
            // we keep a clone of `memory` in `self`, so the mapping outlives the VM fd.
            unsafe { self.fd.set_user_memory_region(mapping) }
                .map_err(|source| VmError::MapMemory { slot, source })?;
        }
        self.memory = Some(memory.clone());
        Ok(())
    }

    /// Raises GSI `gsi` whenever `evt` is written.
    pub fn register_irqfd(&self, evt: &EventFd, gsi: u32) -> Result<(), VmError> {
        self.fd
            .register_irqfd(evt, gsi)
            .map_err(|source| VmError::Irqfd { gsi, source })
    }

    /// Makes a guest 32-bit write of `value` to MMIO `addr` signal `evt` without a VM exit.
    pub fn register_ioevent(&self, evt: &EventFd, addr: u64, value: u32) -> Result<(), VmError> {
        self.fd
            .register_ioevent(evt, &IoEventAddress::Mmio(addr), value)
            .map_err(|source| VmError::Ioeventfd { addr, source })
    }

    /// Creates vCPU `index` of `count` with its CPUID set.
    pub fn create_vcpu(&self, index: u8, count: u8) -> Result<Vcpu, VmError> {
        let fd = self
            .fd
            .create_vcpu(u64::from(index))
            .map_err(|e| VmError::CreateVcpu {
                index,
                source: VcpuError::Create(e),
            })?;
        let mut cpuid = self.supported_cpuid.clone();
        cpuid::patch(&mut cpuid, index, count, self.tsc_deadline);
        Vcpu::new(fd, index, &cpuid).map_err(|source| VmError::CreateVcpu { index, source })
    }
}
