/* Interrupts: CLINT timer and software interrupts, priority, WFI, delegation to S, Sstc, TW. */
#include "common.h"

#define CLINT_MSIP 0x2000000
#define CLINT_MTIMECMP 0x2004000
#define CLINT_MTIME 0x200bff8
#define INT_BIT (1 << 63)

.text
main:
  /* 1. machine timer: mtimecmp = mtime + 100, WFI, take MTI */
  li t0, CLINT_MTIME
  ld t1, 0(t0)
  addi t1, t1, 100
  li t0, CLINT_MTIMECMP
  sd t1, 0(t0)
  li t0, (1 << 7)
  csrw mie, t0
  csrsi mstatus, 8
  wfi
  csrci mstatus, 8
  CHECK_MREC(REC_CAUSE, INT_BIT | 7, 1)
  li t0, CLINT_MTIMECMP
  li t1, -1
  sd t1, 0(t0)
  csrr t1, mip
  andi t1, t1, 0x80
  CHECK(t1, 0, 2)

  /* 2. machine software interrupt through msip */
  li t0, (1 << 3)
  csrw mie, t0
  li t0, CLINT_MSIP
  li t1, 1
  sw t1, 0(t0)
  csrsi mstatus, 8
  nop
  csrci mstatus, 8
  CHECK_MREC(REC_CAUSE, INT_BIT | 3, 3)
  li t0, CLINT_MSIP
  sw zero, 0(t0)

  /* 3. priority: MSI and MTI pending together -> MSI first; MEI > MSI > MTI > SEI > SSI > STI */
  li t0, CLINT_MSIP
  li t1, 1
  sw t1, 0(t0)
  li t0, CLINT_MTIMECMP
  sd zero, 0(t0)
  li t0, (1 << 3) | (1 << 7) | (1 << 1) | (1 << 5) | (1 << 9)
  csrw mie, t0
  csrsi mip, 2
  li t0, (1 << 5) | (1 << 9)
  csrs mip, t0
  csrsi mstatus, 8
  nop
  csrci mstatus, 8
  CHECK_MREC(REC_CAUSE, INT_BIT | 3, 4)
  li t0, CLINT_MSIP
  sw zero, 0(t0)
  li t0, (1 << 7) | (1 << 1) | (1 << 5) | (1 << 9)
  csrw mie, t0
  csrsi mstatus, 8
  nop
  csrci mstatus, 8
  CHECK_MREC(REC_CAUSE, INT_BIT | 7, 5)
  li t0, CLINT_MTIMECMP
  li t1, -1
  sd t1, 0(t0)
  li t0, (1 << 1) | (1 << 5) | (1 << 9)
  csrw mie, t0
  csrsi mstatus, 8
  nop
  csrci mstatus, 8
  CHECK_MREC(REC_CAUSE, INT_BIT | 9, 6)
  li t0, (1 << 1) | (1 << 5)
  csrw mie, t0
  csrsi mstatus, 8
  nop
  csrci mstatus, 8
  CHECK_MREC(REC_CAUSE, INT_BIT | 1, 7)
  li t0, (1 << 5)
  csrw mie, t0
  csrsi mstatus, 8
  nop
  csrci mstatus, 8
  CHECK_MREC(REC_CAUSE, INT_BIT | 5, 8)
  li t0, (1 << 1) | (1 << 5) | (1 << 9)
  csrc mip, t0

  /* 4. WFI with MIE=0 but an enabled interrupt pending: resumes without a trap */
  la t6, m_rec; ld s3, REC_COUNT(t6)
  li t0, CLINT_MTIME
  ld t1, 0(t0)
  addi t1, t1, 50
  li t0, CLINT_MTIMECMP
  sd t1, 0(t0)
  li t0, (1 << 7)
  csrw mie, t0
  wfi
  la t6, m_rec; ld t6, REC_COUNT(t6); bne t6, s3, ifail
  csrr t1, mip
  andi t1, t1, 0x80
  CHECK(t1, 0x80, 9)
  csrw mie, zero
  li t0, CLINT_MTIMECMP
  li t1, -1
  sd t1, 0(t0)

  /* 5. M interrupts are taken in S even with MIE=0; delegated ones are not taken in M */
  li t0, (1 << 1)
  csrw mideleg, t0
  csrw mie, t0
  csrsi mip, 2             /* SSIP pending, delegated, we are in M: not taken */
  csrsi mstatus, 8
  nop
  la t6, m_rec; ld t6, REC_COUNT(t6); bne t6, s3, ifail
  csrci mstatus, 8
  li t0, (1 << 1) | (1 << 5)
  csrw mideleg, t0
  li t0, 1
  slli t0, t0, 63
  csrw CSR_MENVCFG, t0
  li t0, 2
  csrw mcounteren, t0
  li t0, (1 << 21)
  csrs mstatus, t0
  /* enter S with SIE=0: SSIP is a S interrupt, S with SIE=0 -> not taken; then set SIE -> taken to S */
  MRET_TO(1, s_part)
s_part:
  nop
  la t6, s_rec; ld t6, REC_COUNT(t6); bnez t6, ifail_s
  csrsi sstatus, 2
  nop
  csrci sstatus, 2
  CHECK_SREC(REC_CAUSE, INT_BIT | 1, 10)
  csrci sip, 2
  /* 6. Sstc: M enabled STCE and TM (below); S programs stimecmp and waits */
  csrr t0, time
  addi t0, t0, 30
  csrw CSR_STIMECMP, t0
  li t0, (1 << 5)
  csrw sie, t0
  csrsi sstatus, 2
1: la t6, s_rec; ld t6, REC_COUNT(t6); li t5, 2; bne t6, t5, 1b
  csrci sstatus, 2
  CHECK_SREC(REC_CAUSE, INT_BIT | 5, 11)
  li t0, -1
  csrw CSR_STIMECMP, t0
  csrr t1, sip
  andi t1, t1, 0x20
  CHECK(t1, 0, 12)
  /* 7. TW=1 makes WFI in S illegal (trap to M) */
  SET_MRESUME(after_tw)
  wfi
after_tw:
  CHECK_MREC(REC_CAUSE, 2, 13)
  CHECK_MREC(REC_TVAL, 0x10500073, 14)
  j pass

ifail:
  li a0, 97
  j fail
ifail_s:
  li a0, 96
  j fail
