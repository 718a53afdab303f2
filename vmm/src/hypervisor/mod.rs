//! The only module that talks to KVM (`kvm-ioctls`). Everything else sees a [`Vm`] that maps
//! memory, wires interrupts and notifications, and [`Vcpu`]s that run until an exit the VMM
//! must handle.

mod cpuid;
mod vcpu;
mod vm;

pub use vcpu::{Vcpu, VcpuError, VcpuExit, VcpuSetup};
pub use vm::{Vm, VmError};

/// True when `/dev/kvm` is PVM nested virtualization (the `kvm_pvm` module), where only
/// PVM-patched guest kernels run at usable speed and stock Linux guests fail.
pub fn host_is_pvm() -> bool {
    std::path::Path::new("/sys/module/kvm_pvm").exists()
}
