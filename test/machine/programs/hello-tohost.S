# Bare-metal M-mode program: prints through the UART, then exits through HTIF tohost with code EXIT_CODE.
    .option norelax             # no gp-relative addressing: gp is never set up here
    .section .text
    .globl _start
_start:
    csrr t0, mhartid
    bnez t0, park
    li t1, 0x10000000          # NS16550A THR
    la t2, msg
1:  lbu t3, 0(t2)
    beqz t3, 2f
    sb t3, 0(t1)
    addi t2, t2, 1
    j 1b
2:  la t0, tohost
    li t1, (EXIT_CODE << 1) | 1
    sd t1, 0(t0)
3:  j 3b
park:
    wfi
    j park

    .section .data
msg: .asciz "bare metal hello\n"
    .balign 8
    .globl tohost
tohost: .dword 0
