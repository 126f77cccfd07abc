/* PMP: NAPOT and TOR regions enforced for S-mode, M-mode unaffected unless the entry is locked. */
#include "common.h"

#define NAPOT_4K(label) la t0, label; srli t0, t0, 2; ori t0, t0, 0x1ff

.text
main:
  NAPOT_4K(guard)
  csrw pmpaddr0, t0
  NAPOT_4K(noaccess)
  csrw pmpaddr1, t0
  li t0, 0x80000000 >> 2
  csrw pmpaddr2, t0
  li t0, 0x81000000 >> 2
  csrw pmpaddr3, t0
  /* cfg0: NAPOT R; cfg1: NAPOT none; cfg2: OFF; cfg3: TOR RWX */
  li t0, (0x0f << 24) | (0x00 << 16) | (0x18 << 8) | 0x19
  csrw pmpcfg0, t0
  csrr t1, pmpcfg0
  CHECK(t1, 0x0f001819, 1)
  csrr t1, pmpaddr3
  CHECK(t1, 0x81000000 >> 2, 2)

  MRET_TO(1, s_part)
s_part:
  /* guard: load ok, store faults (7) */
  la t2, guard
  ld t3, 0(t2)
  la t6, m_rec; ld t6, REC_COUNT(t6); bnez t6, pfail
  sd t3, 0(t2)
  CHECK_MREC(REC_CAUSE, 7, 3)
  la t6, m_rec; ld t6, REC_TVAL(t6); bne t6, t2, pfail
  /* noaccess: load faults (5) */
  la t2, noaccess
  ld t3, 8(t2)
  CHECK_MREC(REC_CAUSE, 5, 4)
  /* outside every region: faults for S */
  li t2, 0x2000000
  lw t3, 0(t2)
  CHECK_MREC(REC_CAUSE, 5, 5)
  /* fetch from noaccess: instruction access fault (1) */
  SET_MRESUME(m_part)
  la t2, noaccess
  jr t2
m_part:
  CHECK_MREC(REC_CAUSE, 1, 6)
  /* M-mode ignores unlocked entries */
  la t6, m_rec; ld s3, REC_COUNT(t6)
  la t2, guard
  li t3, 0x5a
  sd t3, 0(t2)
  la t6, m_rec; ld t6, REC_COUNT(t6); bne t6, s3, pfail
  /* locking entry 0 makes it apply to M too, and freezes it */
  li t0, 0x80
  csrs pmpcfg0, t0
  sd t3, 0(t2)
  CHECK_MREC(REC_CAUSE, 7, 7)
  csrw pmpaddr0, zero
  csrr t1, pmpaddr0
  beqz t1, pfail
  ld t3, 0(t2)
  CHECK(t3, 0x5a, 8)
  j pass

pfail:
  li a0, 95
  j fail

.data
.align 12
guard: .skip 4096
noaccess: .skip 4096
