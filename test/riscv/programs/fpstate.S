/*
 * mstatus.FS around FP loads and stores, in hot loops (so translated code runs them too): with FS Clean, stores
 * work and leave it Clean (they change no FP state); a load makes it Dirty; with FS Off, a store is an illegal
 * instruction (cause 2) that stores nothing, and so is reading frm. Reading frm, fflags and fcsr with FS Clean
 * gives their values and leaves FS Clean (translated code reads them from the hart's FP_FAST_OFF word).
 */
#include "common.h"

#define MSTATUS_FS (3 << 13)
#define FS_CLEAN (2 << 13)
#define FS_DIRTY (3 << 13)

.text
main:
  li t0, MSTATUS_FS
  csrs mstatus, t0
  li t0, 0x4010000012345678   /* a double whose low word is not zero */
  fmv.d.x fa0, t0
  /* 1. FS Clean: 40 stores of fa0 (as setjmp saves fs0-fs11 after a context switch); FS stays Clean */
  li t0, MSTATUS_FS
  csrc mstatus, t0
  li t0, FS_CLEAN
  csrs mstatus, t0
  la a0, slots
  li s0, 40
1:
  fsd fa0, 0(a0)
  fsw fa0, 8(a0)
  addi a0, a0, 16
  addi s0, s0, -1
  bnez s0, 1b
  csrr t1, mstatus
  li t0, MSTATUS_FS
  and t1, t1, t0
  CHECK(t1, FS_CLEAN, 1)
  la a0, slots
  ld t2, 0(a0)
  CHECK(t2, 0x4010000012345678, 2)
  lwu t2, 8 + 39 * 16(a0)    /* the last fsw: fa0's low word */
  CHECK(t2, 0x12345678, 3)

  /* 2. FS Clean: loads make it Dirty */
  li s0, 40
  la a0, slots
2:
  fld fa1, 0(a0)
  addi a0, a0, 16
  addi s0, s0, -1
  bnez s0, 2b
  csrr t1, mstatus
  li t0, MSTATUS_FS
  and t1, t1, t0
  CHECK(t1, FS_DIRTY, 4)

  /* 3. FS Off: each store traps (illegal instruction) and stores nothing */
  la a0, spare
  sd zero, 0(a0)
  li t0, MSTATUS_FS
  csrc mstatus, t0
  li s0, 30
3:
  fsd fa0, 0(a0)
  addi s0, s0, -1
  bnez s0, 3b
  CHECK_MREC(REC_COUNT, 30, 5)
  CHECK_MREC(REC_CAUSE, 2, 6)
  ld t2, 0(a0)
  CHECK(t2, 0, 7)

  /* 4. FS Off: reading frm (frrm) is an illegal instruction too, and leaves rd alone */
  li t1, 77
  li s0, 30
4:
  frrm t1
  addi s0, s0, -1
  bnez s0, 4b
  CHECK_MREC(REC_COUNT, 60, 8)
  CHECK_MREC(REC_CAUSE, 2, 9)
  CHECK(t1, 77, 10)

  /* 5. FS Clean: frrm, frflags and frcsr read frm = 3 and fflags = 5, and leave FS Clean */
  li t0, MSTATUS_FS
  csrs mstatus, t0
  fsrmi 3
  fsflagsi 5
  li t0, MSTATUS_FS
  csrc mstatus, t0
  li t0, FS_CLEAN
  csrs mstatus, t0
  li s0, 30
  li s1, 0
5:
  frrm t1
  frflags t2
  frcsr t3
  add s1, s1, t3
  addi s0, s0, -1
  bnez s0, 5b
  CHECK(t1, 3, 11)
  CHECK(t2, 5, 12)
  CHECK(t3, 101, 13)
  CHECK(s1, 3030, 14)
  csrr t1, mstatus
  li t0, MSTATUS_FS
  and t1, t1, t0
  CHECK(t1, FS_CLEAN, 15)
  j pass

.bss
.align 3
slots: .skip 16 * 40
spare: .skip 8
