/*
 * Code the WebAssembly JIT translates as regions (several blocks of a page in one function, see
 * src/riscv/jit/wasm/translate.ts), written so it also passes on the interpreter and retires the same count:
 * a shell sort shaped like gcc's (an inner loop whose exits go to other blocks of the page), and a loop of two
 * blocks that branch to each other where the second one faults once.
 */
#include "common.h"

.text
main:
  /* 1. Fill 64 words from a linear congruential generator, shell-sort them, check the order and the sum. */
  la a0, arr
  li a1, 64
  li t0, 12345
  li t1, 0
  li s5, 0
  li t2, 1103515245
fill:
  mul t0, t0, t2
  addi t0, t0, 1234
  srli t3, t0, 16
  andi t3, t3, 2047
  add s5, s5, t3
  slli t4, t1, 2
  add t4, t4, a0
  sw t3, 0(t4)
  addi t1, t1, 1
  bne t1, a1, fill
  csrr s6, minstret
  srli a7, a1, 1
gap_loop:
  mv a4, a7
i_loop:
  slli t4, a4, 2
  add t4, t4, a0
  lw s2, 0(t4)
  mv t1, a4
while_loop:
  sub t5, t1, a7
  slli t5, t5, 2
  add t5, t5, a0
  lw s3, 0(t5)
  bgeu s2, s3, store_t
  slli s4, t1, 2
  add s4, s4, a0
  sw s3, 0(s4)
  sub t1, t1, a7
  bge t1, a7, while_loop
store_t:
  slli s4, t1, 2
  add s4, s4, a0
  sw s2, 0(s4)
  addi a4, a4, 1
  bne a4, a1, i_loop
  srli a7, a7, 1
  bnez a7, gap_loop
  csrr s7, minstret
  sub s6, s7, s6           /* instructions retired by the sort (compared across engines) */
  li t1, 1
  lw t2, 0(a0)
  mv s8, t2
sorted:
  slli t4, t1, 2
  add t4, t4, a0
  lw t3, 0(t4)
  add s8, s8, t3
  bgeu t3, t2, 1f
  li a0, 1
  j fail
1:
  mv t2, t3
  addi t1, t1, 1
  bne t1, a1, sorted
  beq s8, s5, 2f
  li a0, 2
  j fail
2:

  /* 2. Two blocks that branch to each other; the second one's load faults once (entry 150 is not RAM). */
  la s3, ptrs
  li s0, 200
  li s1, 0
  csrr s9, minstret
  j seg_a
seg_b:
  ld t3, 0(t2)
  add s1, s1, t3
  addi s3, s3, 8
  addi s0, s0, -1
  bnez s0, seg_a
  j seg_done
seg_a:
  ld t2, 0(s3)
  addi s1, s1, 3
  bnez s0, seg_b
  li a0, 3
  j fail
seg_done:
  csrr s7, minstret
  sub s9, s7, s9
  CHECK_ONE_MTRAP(5, 0x1000, seg_b, 4)
  /* each good load reads 7; the faulting one leaves t3 at its previous value (7) */
  CHECK(s1, 200 * 3 + 200 * 7, 8)
  j pass

.data
.align 3
POINTERS_WITH_A_HOLE

.bss
.align 3
arr: .skip 256
