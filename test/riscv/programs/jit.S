/*
 * Edge cases for translated code (src/riscv/jit), written so they also pass on the interpreter:
 * a fault in the middle of a looping block, self-modifying code (with fence.i, including a store that patches
 * the instruction right after it), an interrupt arriving while a long loop runs, and code whose virtual page
 * is remapped to another physical page.
 */
#include "common.h"

#define CLINT_MTIMECMP 0x2004000
#define CLINT_MTIME 0x200bff8

.text
main:
  /* 1. A hot loop whose body loads through a pointer table: entry 150 is not RAM (access fault, cause 5). */
  la s3, ptrs
  li s0, 200
  li s1, 0
  csrr s6, minstret
fault_loop:
  ld t2, 0(s3)
  addi s1, s1, 3
  xor s4, s1, s0
fault_ld:
  ld t3, 0(t2)
  add s1, s1, t3
  addi s3, s3, 8
  addi s0, s0, -1
  bnez s0, fault_loop
  csrr s7, minstret
  sub s6, s7, s6           /* instructions retired by the loop and the one trap (compared across engines) */
  CHECK_ONE_MTRAP(5, 0x1000, fault_ld, 1)
  /* each good load reads 7; the faulting one leaves t3 at its previous value (7) */
  CHECK(s1, 200 * 3 + 200 * 7, 5)

  /* 2. Self-modifying code: run patchme hot, rewrite its first instruction, fence.i, run it again. */
  li s0, 100
2:
  jal ra, patchme
  addi s0, s0, -1
  bnez s0, 2b
  CHECK(a0, 1, 10)
  la t0, patchme
  li t1, 0x00200513        /* addi a0, zero, 2 */
  sw t1, 0(t0)
  fence.i
  li s0, 100
3:
  jal ra, patchme
  addi s0, s0, -1
  bnez s0, 3b
  CHECK(a0, 2, 11)
  /* a store that rewrites the instruction two slots after it, in the same straight line */
  la t0, patched_next
  li t1, 0x00300513        /* addi a0, zero, 3 */
  sw t1, 0(t0)
  fence.i
patched_next:
  li a0, 1
  CHECK(a0, 3, 12)

  /* 3. An interrupt while a long loop runs: the timer fires a few thousand instructions in. */
  li t0, CLINT_MTIME
  ld t1, 0(t0)
  addi t1, t1, 30
  li t0, CLINT_MTIMECMP
  sd t1, 0(t0)
  li t0, (1 << 7)
  csrs mie, t0
  csrsi mstatus, 8
  li s0, 200000
  li s1, 0
irq_loop:
  addi s1, s1, 1
  addi s0, s0, -1
  bnez s0, irq_loop
irq_end:
  csrci mstatus, 8
  CHECK(s1, 200000, 20)
  CHECK_MREC(REC_COUNT, 2, 21)
  CHECK_MREC(REC_CAUSE, 0x8000000000000007, 22)
  la t6, m_rec
  ld t6, REC_EPC(t6)
  la t0, irq_loop
  bltu t6, t0, 4f
  la t0, irq_end
  bgeu t6, t0, 4f
  j 5f
4:
  li a0, 23
  j fail
5:

  /* 4. Code on a remapped page: VA 0x40000000 maps code_a (returns 1), then code_b (returns 2). */
  MKPTE_RAW(root, 2, ((0x80000000 >> 12) << 10) | PTE_V | PTE_R | PTE_W | PTE_X | PTE_A | PTE_D)
  MKPTE(root, 1, l1, PTE_V)
  MKPTE(l1, 0, l0, PTE_V)
  MKPTE(l0, 0, code_a, PTE_V | PTE_R | PTE_X | PTE_A)
  la t0, root
  srli t0, t0, 12
  li t1, (8 << 60)
  or t0, t0, t1
  csrw satp, t0
  sfence.vma
  MRET_TO(1, s_mode)
s_mode:
  li s0, 100
  li s2, 0x40000000
6:
  jalr ra, 0(s2)
  addi s0, s0, -1
  bnez s0, 6b
  CHECK(a0, 1, 30)
  MKPTE(l0, 0, code_b, PTE_V | PTE_R | PTE_X | PTE_A)
  sfence.vma
  li s0, 100
7:
  jalr ra, 0(s2)
  addi s0, s0, -1
  bnez s0, 7b
  CHECK(a0, 2, 31)
  SET_MRESUME(back_in_m)
  ecall
back_in_m:
  csrw satp, zero
  j pass

patchme:
  li a0, 1
  ret

.align 12
code_a:
  li a0, 1
  ret
.align 12
code_b:
  li a0, 2
  ret

.data
.align 3
POINTERS_WITH_A_HOLE

.bss
.align 12
root: .skip 4096
l1: .skip 4096
l0: .skip 4096
