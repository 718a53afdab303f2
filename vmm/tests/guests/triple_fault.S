/*
 * A guest that triple-faults: zone-vmm enters it with an empty interrupt descriptor table
 * (the Linux boot protocol's state), so the general protection fault of a non-canonical load
 * can be delivered neither as itself nor as the double fault that follows. zone-vmm must end
 * the zone as failed and say so (KVM_EXIT_SHUTDOWN), not as a reboot. (A breakpoint or lidt
 * would do as well, but PVM cannot emulate them.)
 */
    .code64
    .globl _start
_start:
    movabs $0x8000000000000000, %rax
    mov (%rax), %rax
    hlt
