# Bare-metal M-mode program: writes "chatter\n" to the UART forever (never exits by itself).
    .option norelax
    .section .text
    .globl _start
_start:
    li t1, 0x10000000          # NS16550A THR
0:  la t2, msg
1:  lbu t3, 0(t2)
    beqz t3, 0b
    sb t3, 0(t1)
    addi t2, t2, 1
    j 1b

    .section .data
msg: .asciz "chatter\n"
