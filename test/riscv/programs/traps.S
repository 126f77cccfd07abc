/* Exceptions, tval, delegation, privilege transitions and xret stacks. */
#include "common.h"

.text
main:
  /* 1. ecall from M: cause 11, epc, tval 0 */
e1: ecall
  CHECK_MREC(REC_CAUSE, 11, 1)
  la t0, e1
  la t6, m_rec; ld t6, REC_EPC(t6); bne t0, t6, f1
  CHECK_MREC(REC_TVAL, 0, 2)

  /* 2. illegal instruction: tval = instruction bits */
  .word 0xffffffff
  CHECK_MREC(REC_CAUSE, 2, 3)
  CHECK_MREC(REC_TVAL, 0xffffffff, 4)
  /* a CSR that does not exist */
e2: csrr t0, 0x7c0
  CHECK_MREC(REC_CAUSE, 2, 5)
  CHECK_MREC(REC_TVAL, 0x7c0022f3, 6)
  /* write to a read-only CSR */
  csrw mhartid, zero
  CHECK_MREC(REC_CAUSE, 2, 7)

  /* 3. ebreak: cause 3, tval = pc */
e3: ebreak
  CHECK_MREC(REC_CAUSE, 3, 8)
  la t0, e3
  la t6, m_rec; ld t6, REC_TVAL(t6); bne t0, t6, f1

  /* 4. misaligned AMO: cause 6, tval = address; misaligned LR: cause 4 */
  la t0, scratch
  addi t0, t0, 1
  amoadd.w t1, t1, (t0)
  CHECK_MREC(REC_CAUSE, 6, 9)
  la t1, scratch; addi t1, t1, 1
  la t6, m_rec; ld t6, REC_TVAL(t6); bne t1, t6, f1
  lr.d t1, (t0)
  CHECK_MREC(REC_CAUSE, 4, 10)
  /* misaligned plain load is performed */
  la t0, scratch
  li t1, 0x1122334455667788
  sd t1, 0(t0)
  sd t1, 8(t0)
  ld t2, 3(t0)
  CHECK(t2, 0x6677881122334455, 11)

  /* 5. access faults outside RAM: load cause 5, store cause 7, fetch cause 1, tval = address */
  li t0, 0x40000000
  ld t1, 0(t0)
  CHECK_MREC(REC_CAUSE, 5, 12)
  CHECK_MREC(REC_TVAL, 0x40000000, 13)
  sd t1, 8(t0)
  CHECK_MREC(REC_CAUSE, 7, 14)
  CHECK_MREC(REC_TVAL, 0x40000008, 15)
  SET_MRESUME(after_fetch)
  jr t0
after_fetch:
  CHECK_MREC(REC_CAUSE, 1, 16)
  CHECK_MREC(REC_TVAL, 0x40000000, 17)
  CHECK_MREC(REC_EPC, 0x40000000, 18)

  /* 6. mret to S: MPP cleared to U, MIE <- MPIE, MPIE <- 1 */
  li t0, (1 << 7)
  csrs mstatus, t0          /* MPIE=1 */
  csrci mstatus, 8          /* MIE=0 */
  MRET_TO(1, in_s)
in_s:
  /* In S: reading an M CSR is illegal (goes to M since not delegated, then skipped) */
  csrr t0, mstatus
  SET_MRESUME(back_from_s)
  /* ecall from S: cause 9 */
  ecall
back_from_s:
  CHECK_MREC(REC_CAUSE, 9, 19)
  /* the saved mstatus had MPP = S (1) */
  la t6, m_rec; ld t6, REC_STATUS(t6); srli t6, t6, 11; andi t6, t6, 3; li t0, 1; bne t6, t0, f1
  /* after the mret into S: MIE became 1 (from MPIE) then trap saved it into MPIE */
  la t6, m_rec; ld t6, REC_STATUS(t6); andi t6, t6, 0x80; beqz t6, f1

  /* 7. delegation: U ecall (8) and illegal (2) delegated to S */
  li t0, (1 << 8) | (1 << 2)
  csrw medeleg, t0
  csrr t1, medeleg
  CHECK(t1, 0x104, 20)
  /* bit 11 (M ecall) is read-only zero */
  li t0, (1 << 11)
  csrs medeleg, t0
  csrr t1, medeleg
  CHECK(t1, 0x104, 21)
  SET_MRESUME(back_from_s2)
  MRET_TO(1, in_s2)
in_s2:
  li t0, (1 << 8)
  csrc sstatus, t0          /* SPP = U */
  la t0, in_u
  csrw sepc, t0
  sret
in_u:
 .word 0xffffffff          /* illegal in U: delegated to S, skipped */
  SET_SRESUME(s_after_u)
  ecall                     /* U ecall: delegated to S, resumes at s_after_u in S */
s_after_u:
  CHECK_SREC(REC_CAUSE, 8, 22)
  CHECK_SREC(REC_COUNT, 2, 23)
  /* the saved sstatus had SPP = U */
  la t6, s_rec; ld t6, REC_STATUS(t6); andi t6, t6, 0x100; bnez t6, f1
  /* sret is illegal in U, wfi illegal in U: both delegated-illegal -> counted */
  ecall                     /* S ecall goes to M (not delegated) */
back_from_s2:
  CHECK_MREC(REC_CAUSE, 9, 24)

  /* 8. TSR: sret in S traps to M as illegal */
  csrw medeleg, zero
  li t0, (1 << 22)
  csrs mstatus, t0
  SET_MRESUME(back_tsr)
  MRET_TO(1, in_s3)
in_s3:
  sret
back_tsr:
  CHECK_MREC(REC_CAUSE, 2, 25)
  CHECK_MREC(REC_TVAL, 0x10200073, 26)
  li t0, (1 << 22)
  csrc mstatus, t0

  /* 9. mstatus fields: MPP WARL (2 -> 0), SD follows FS=dirty, UXL/SXL = 2 */
  li t0, (3 << 11)
  csrc mstatus, t0
  li t0, (2 << 11)
  csrs mstatus, t0
  csrr t1, mstatus
  srli t1, t1, 11
  andi t1, t1, 3
  CHECK(t1, 0, 27)
  li t0, (3 << 13)
  csrs mstatus, t0
  csrr t1, mstatus
  bgez t1, f1
  srli t1, t1, 32
  andi t1, t1, 0xf
  CHECK(t1, 0xa, 28)
  /* sstatus is a view of mstatus */
  csrr t1, sstatus
  bgez t1, f1
  li t0, (1 << 18)
  csrs sstatus, t0
  csrr t1, mstatus
  li t0, (1 << 18)
  and t1, t1, t0
  beqz t1, f1
  csrc mstatus, t0

  /* 10. FS=Off makes FP instructions and fcsr illegal */
  li t0, (3 << 13)
  csrc mstatus, t0
  fmv.d.x f1, zero
  CHECK_MREC(REC_CAUSE, 2, 29)
  csrr t1, fcsr
  CHECK_MREC(REC_CAUSE, 2, 30)
  li t0, (1 << 13)
  csrs mstatus, t0
  fmv.d.x f1, zero
  csrr t1, mstatus
  srli t1, t1, 13
  andi t1, t1, 3
  CHECK(t1, 3, 31)

  /* 11. counters: cycle/instret/time readable in M; in U without mcounteren -> illegal */
  rdinstret t0
  rdinstret t1
  sub t1, t1, t0
  CHECK(t1, 1, 32)
  csrw mcounteren, zero
  MRET_TO(0, in_u2)
in_u2:
  rdcycle t0
  SET_MRESUME(back_cnt)
  ecall
back_cnt:
  CHECK_MREC(REC_CAUSE, 8, 33)
  la t6, m_rec; ld t6, REC_COUNT(t6); mv s8, t6
  li t0, 7
  csrw mcounteren, t0
  csrw scounteren, t0
  SET_MRESUME(back_cnt2)
  MRET_TO(0, in_u3)
in_u3:
  rdcycle t0
  rdtime t0
  rdinstret t0
  ecall
back_cnt2:
  la t6, m_rec; ld t6, REC_COUNT(t6); addi s8, s8, 1; bne t6, s8, f1

  /* 12. vectored mtvec: interrupts go to base + 4*cause, exceptions to base */
  la t0, vec_table
  ori t0, t0, 1
  csrw mtvec, t0
  li t0, (1 << 1)
  csrs mie, t0
  csrsi mip, 2              /* SSIP, not delegated -> M interrupt 1 */
  csrsi mstatus, 8
  nop
  nop
  csrci mstatus, 8
  la t0, vec_hit
  ld t1, 0(t0)
  CHECK(t1, 1, 34)
  la t0, mtrap
  csrw mtvec, t0

  /* 13. mscratch holds 64 bits; mepc clears bit 0 */
  li t0, 0x123456789abcdef1
  csrw mscratch, t0
  csrr t1, mscratch
  bne t0, t1, f1
  csrw mepc, t0
  csrr t1, mepc
  CHECK(t1, 0x123456789abcdef0, 35)
  /* misa: RV64 with IMAFDC S U */
  csrr t0, misa
  bgez t0, f1
  li t1, 0x3fffffff
  and t0, t0, t1
  CHECK(t0, 0x14112d, 36)

  j pass
f1:
  li a0, 99
  j fail

.align 8
vec_table:
  j f1                      /* 0: exceptions would land here */
  j vec_ssi                 /* 1: SSI */
  j f1
  j f1
vec_ssi:
  csrci mip, 2
  la s10, vec_hit
  li s11, 1
  sd s11, 0(s10)
  mret

.data
.align 3
vec_hit: .dword 0
scratch: .dword 0, 0, 0
