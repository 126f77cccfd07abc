# Bare-metal M-mode program that makes no progress: it prints one line, points mtvec at an illegal
# instruction and jumps there, so the hart takes the same exception at the same pc forever.
    .option norelax
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
2:  la t0, bad
    csrw mtvec, t0
    jr t0
park:
    wfi
    j park
    .balign 4
bad:
    .word 0                    # all-zero: an illegal instruction

    .section .data
msg: .asciz "about to loop\n"
