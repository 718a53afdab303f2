/*
 * A freestanding x86-64 guest that reports the state it was entered with, one KEY=HEX line
 * per value on COM1, then prints the kernel command line and resets the machine through the
 * i8042 (which ends the VMM with status 0). Built by tests/entry_state.rs with GNU as and ld.
 */
    .code64
    .text
    .globl _start
_start:
    mov %rsp, %r14              /* the stack pointer as entered */
    mov %rsi, %r15              /* the zero page pointer */

    .macro report name, value
    lea 91f(%rip), %rbx
    call puts
    mov \value, %rax
    call hex
    jmp 92f
91: .asciz "\name="
92:
    .endm

    report RSI, %r15
    report RSP, %r14
    pushfq
    pop %r13
    report RFLAGS, %r13
    mov %cr0, %r13
    report CR0, %r13
    mov %cr3, %r13
    report CR3, %r13
    mov %cr4, %r13
    report CR4, %r13
    mov $0xc0000080, %ecx       /* IA32_EFER */
    rdmsr
    shl $32, %rdx
    or %rdx, %rax
    mov %rax, %r13
    report EFER, %r13
    xor %r13, %r13
    mov %cs, %r13w
    report CS, %r13
    mov %ds, %r13w
    report DS, %r13
    mov %ss, %r13w
    report SS, %r13
    sub $16, %rsp
    sgdt (%rsp)
    movzwq (%rsp), %r13
    report GDT_LIMIT, %r13
    mov 2(%rsp), %r12
    report GDT_BASE, %r12
    add $16, %rsp
    xor %r13, %r13
    mov %cs, %r13w
    and $~7, %r13
    mov (%r12,%r13), %r13
    report GDT_CS_ENTRY, %r13
    mov (%r15), %r13            /* PML4[0] through the identity map */
    mov %cr3, %r12
    mov (%r12), %r13
    report PML4E0, %r13
    movl 0x202(%r15), %r13d
    report HDR_MAGIC, %r13
    movzbq 0x210(%r15), %r13
    report LOADER_TYPE, %r13
    movzbq 0x1e8(%r15), %r13
    report E820_ENTRIES, %r13
    movl 0x228(%r15), %r13d
    report CMDLINE_PTR, %r13

    lea cmdline_key(%rip), %rbx
    call puts
    movl 0x228(%r15), %ebx
    call puts
    mov $'\n', %al
    mov $0x3f8, %dx
    out %al, %dx

    mov $0xfe, %al              /* i8042: pulse the reset line */
    out %al, $0x64
1:  hlt
    jmp 1b

/* Writes the NUL-terminated string at %rbx to COM1. */
puts:
    mov $0x3f8, %dx
1:  movb (%rbx), %al
    test %al, %al
    jz 2f
    out %al, %dx
    inc %rbx
    jmp 1b
2:  ret

/* Writes %rax as 16 hex digits and a newline to COM1. */
hex:
    mov %rax, %r8
    mov $16, %ecx
    lea digits(%rip), %rdi
    mov $0x3f8, %dx
1:  rol $4, %r8
    mov %r8, %rax
    and $0xf, %rax
    movb (%rdi,%rax), %al
    out %al, %dx
    dec %ecx
    jnz 1b
    mov $'\n', %al
    out %al, %dx
    ret

digits:
    .ascii "0123456789abcdef"
cmdline_key:
    .asciz "CMDLINE="
