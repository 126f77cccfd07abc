# Bare-metal M-mode program for snapshot tests: counts in s0 (and in RAM), sums the count in fs0 (FP state),
# takes a CLINT timer interrupt every 5000 ticks (counted in `ticks`), and every 20000 iterations prints
# "<count> <ticks> <sum>" in hex on the UART. Never exits.
    .option norelax
    .section .text.init
    .globl _start
_start:
    la t0, trap
    csrw mtvec, t0
    la t0, save
    csrw mscratch, t0
    li t0, 0x2000            # mstatus.FS = initial
    csrs mstatus, t0
    fcvt.d.l fs0, zero
    li t0, 0x200bff8         # mtime
    ld t1, 0(t0)
    li t2, 5000
    add t1, t1, t2
    li t0, 0x2004000         # mtimecmp (hart 0)
    sd t1, 0(t0)
    li t0, 0x80              # MTIE
    csrs mie, t0
    csrsi mstatus, 8         # MIE
    li s0, 0
loop:
    addi s0, s0, 1
    la t0, counter
    sd s0, 0(t0)
    fcvt.d.l ft0, s0
    fadd.d fs0, fs0, ft0
    li t1, 20000
    remu t2, s0, t1
    bnez t2, loop
    mv a0, s0
    call puthex
    li a0, ' '
    call putc
    la t0, ticks
    ld a0, 0(t0)
    call puthex
    li a0, ' '
    call putc
    fcvt.l.d a0, fs0, rtz
    call puthex
    li a0, '\n'
    call putc
    j loop

putc:
    li t3, 0x10000000
    sb a0, 0(t3)
    ret

puthex:                      # prints a0 as 16 hex digits; clobbers t3-t6, a1
    mv a1, a0
    li t4, 60
1:  srl t5, a1, t4
    andi t5, t5, 15
    li t6, 10
    blt t5, t6, 2f
    addi t5, t5, 'a' - 10
    j 3f
2:  addi t5, t5, '0'
3:  li t3, 0x10000000
    sb t5, 0(t3)
    addi t4, t4, -4
    bgez t4, 1b
    ret

    .align 4
trap:
    csrrw t0, mscratch, t0   # t0 = save area, mscratch = the interrupted t0
    sd t1, 0(t0)
    sd t2, 8(t0)
    la t1, ticks
    ld t2, 0(t1)
    addi t2, t2, 1
    sd t2, 0(t1)
    li t1, 0x2004000
    ld t2, 0(t1)
    addi t2, t2, 2000
    addi t2, t2, 2000
    addi t2, t2, 1000
    sd t2, 0(t1)
    ld t1, 0(t0)
    ld t2, 8(t0)
    csrrw t0, mscratch, t0   # back: t0 restored, mscratch = save area
    mret

    .section .data
    .align 3
counter: .dword 0
ticks:   .dword 0
save:    .dword 0, 0
