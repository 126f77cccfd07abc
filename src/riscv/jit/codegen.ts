/**
 * Turns a run of decoded slots of one page into the source of a JS function (a translated block).
 *
 * The source is built only from numbers taken out of the decoded slot words (op, register offsets,
 * immediates, page offsets): no guest-derived string ever reaches `new Function`.
 *
 * A block starts at a slot and runs straight-line code of its page: conditional branches are side exits
 * (a branch back to the block's first slot loops inside the function while the budget lasts), and the block
 * ends at a jump, a slot that ends the page (or straddles it), or after MAX_BLOCK instructions. Loads and
 * stores inline the hart's TLB lookup; misses, rare ops (CSRs, atomics, system ops, M-division) and FP ops
 * that need the trap path call back into the hart. Registers live in the hart's Int32Array (int32 halves),
 * so the architectural state is exact whenever a callee can trap.
 *
 * Generated function: `(h, x, pb, n, limit, ppn) => n'` where `pb` is the virtual base of the page, `n` the
 * instructions retired so far in this run() slice, `limit` its budget and `ppn` the page's RAM page number
 * (a store that clears its code-page mark ends the block). It returns the new count and leaves
 * the next pc in `h.pcValue`. Before anything that can trap it records the faulting pc and the count retired
 * before it in `h.jitPc` / `h.jitN`, so the run loop reports precise exceptions.
 */
import { MSTATUS_FS } from '../csr.js';
import { Op, RD_SHIFT, RS1_SHIFT, RS2_SHIFT, STEP_SHIFT } from '../hart.js';

/** Longest block, in instructions: bounds compile time and the delay before an interrupt is seen. */
export const MAX_BLOCK = 16;

export interface BlockSource {
  /** Body of `function (h, x, pb, n, limit, ppn)`; the prelude names E's members (see PRELUDE). */
  body: string;
  /** Instructions on the straight-line path (the block's length). */
  length: number;
}

/** Names the generated code uses for the environment a BlockJit hands to every block. */
export const PRELUDE =
  'const lt = E.loadTag, lv = E.loadView, lo = E.loadOff, st = E.storeTag, sv = E.storeView, so = E.storeOff, ' +
  'cp = E.codePages, mul64 = E.mul64, r64 = E.r64, fpf = E.fpFns, shl = E.shl, shr = E.shr, sar = E.sar;';

const TWO32 = '4294967296';

/** Reads the decoded words of a slot, decoding it first if needed. */
export type SlotReader = (slot: number) => { w: number; imm: number };

const num = (v: number): string => {
  if (!Number.isSafeInteger(v)) throw new Error(`jit: non-integer constant ${v}`);
  return String(v);
};

/**
 * Emits the block starting at `start` of a page. Returns null when the first slot cannot start a block (a
 * page-straddling instruction or the page end). The source depends only on the instructions, so identical
 * code on different pages (a program loaded again, a library in two processes) shares one translation.
 */
export function generateBlock(read: SlotReader, start: number): BlockSource | null {
  const out: string[] = [];
  let slot = start;
  let k = 0; // instructions before the current one in this pass through the block
  let loops = false;
  const startOff = start * 2;
  const exitTo = (pcExpr: string, retired: number): string => `h.pcValue = ${pcExpr}; return n + ${retired};`;
  /** Taken control transfer to page offset `off` (may lie outside the page) after instruction k retired. */
  const jumpTo = (off: number): string => {
    if (off === startOff) {
      loops = true;
      return `n += ${k + 1}; if (n < limit) continue; h.pcValue = pb + ${num(off)}; return n;`;
    }
    return exitTo(`pb + ${num(off)}`, k + 1);
  };
  /** Where a trap in the current instruction is reported from. */
  const trapPoint = (pcOff: number): string => `h.jitN = n + ${k}; h.jitPc = pb + ${num(pcOff)};`;

  for (;;) {
    if (k >= MAX_BLOCK) {
      out.push(exitTo(`pb + ${num(slot * 2)}`, k));
      break;
    }
    const { w, imm } = read(slot);
    const op = w & 0xff;
    const rd = (w >>> RD_SHIFT) & 0x7f;
    const r1 = (w >>> RS1_SHIFT) & 0x7f;
    const r2 = (w >>> RS2_SHIFT) & 0x7f;
    const step = w >>> STEP_SHIFT;
    const pcOff = slot * 2;
    const nextOff = pcOff + step * 2;
    if (op === Op.PAGE_END || op === Op.CROSS || op === Op.DECODE) {
      if (k === 0) return null;
      out.push(exitTo(`pb + ${num(pcOff)}`, k));
      break;
    }
    const X = (i: number): string => `x[${i}]`;
    const I = num(imm);
    const IHI = num(imm >> 31);
    let ends = false;
    switch (op) {
      case Op.NOP:
        break;
      case Op.LUI:
        out.push(`x[${rd}] = ${I}; x[${rd + 1}] = ${IHI};`);
        break;
      case Op.AUIPC:
        out.push(`{ const v = pb + ${num(pcOff + imm)}; x[${rd}] = v | 0; x[${rd + 1}] = Math.floor(v / ${TWO32}) | 0; }`);
        break;
      case Op.JAL:
        out.push(`{ const v = pb + ${num(nextOff)}; x[${rd}] = v | 0; x[${rd + 1}] = Math.floor(v / ${TWO32}) | 0; }`);
        out.push(jumpTo(pcOff + imm));
        ends = true;
        break;
      case Op.JALR:
        out.push(
          `{ const t = ${X(r1 + 1)} * ${TWO32} + (${X(r1)} >>> 0) + ${I}; const v = pb + ${num(nextOff)}; ` +
            `x[${rd}] = v | 0; x[${rd + 1}] = Math.floor(v / ${TWO32}) | 0; h.pcValue = t - (t & 1); return n + ${k + 1}; }`,
        );
        ends = true;
        break;
      case Op.BEQ:
        out.push(`if (${X(r1)} === ${X(r2)} && ${X(r1 + 1)} === ${X(r2 + 1)}) { ${jumpTo(pcOff + imm)} }`);
        break;
      case Op.BNE:
        out.push(`if (${X(r1)} !== ${X(r2)} || ${X(r1 + 1)} !== ${X(r2 + 1)}) { ${jumpTo(pcOff + imm)} }`);
        break;
      case Op.BLT:
      case Op.BGE: {
        const lt = `(${X(r1 + 1)} < ${X(r2 + 1)} || (${X(r1 + 1)} === ${X(r2 + 1)} && ${X(r1)} >>> 0 < ${X(r2)} >>> 0))`;
        out.push(`if (${op === Op.BLT ? '' : '!'}${lt}) { ${jumpTo(pcOff + imm)} }`);
        break;
      }
      case Op.BLTU:
      case Op.BGEU: {
        const lt = `(${X(r1 + 1)} >>> 0 < ${X(r2 + 1)} >>> 0 || (${X(r1 + 1)} === ${X(r2 + 1)} && ${X(r1)} >>> 0 < ${X(r2)} >>> 0))`;
        out.push(`if (${op === Op.BLTU ? '' : '!'}${lt}) { ${jumpTo(pcOff + imm)} }`);
        break;
      }
      case Op.LB:
      case Op.LH:
      case Op.LW:
      case Op.LD:
      case Op.LBU:
      case Op.LHU:
      case Op.LWU: {
        let fast: string;
        switch (op) {
          case Op.LB:
            fast = `const v = lv[ti].getInt8(o); x[${rd}] = v; x[${rd + 1}] = v >> 31;`;
            break;
          case Op.LH:
            fast = `const v = lv[ti].getInt16(o, true); x[${rd}] = v; x[${rd + 1}] = v >> 31;`;
            break;
          case Op.LW:
            fast = `const v = lv[ti].getInt32(o, true); x[${rd}] = v; x[${rd + 1}] = v >> 31;`;
            break;
          case Op.LD:
            // read8: one access when other threads' harts could store between two halves (HartMemory.read8).
            fast = `h.read8(lv[ti], o); x[${rd}] = h.valLo; x[${rd + 1}] = h.valHi;`;
            break;
          case Op.LBU:
            fast = `x[${rd}] = lv[ti].getUint8(o); x[${rd + 1}] = 0;`;
            break;
          case Op.LHU:
            fast = `x[${rd}] = lv[ti].getUint16(o, true); x[${rd + 1}] = 0;`;
            break;
          default:
            fast = `x[${rd}] = lv[ti].getInt32(o, true); x[${rd + 1}] = 0;`;
        }
        out.push(
          `{ const va = ${X(r1 + 1)} * ${TWO32} + (${X(r1)} >>> 0) + ${I}; const off = va & 4095; const ti = (va >>> 12) & 2047;` +
            ` if (lt[ti] === va - off + ctx && off <= 4088) { const o = lo[ti] + off; ${fast} }` +
            ` else { ${trapPoint(pcOff)} h.loadSlow(va, ${op}); x[${rd}] = h.valLo; x[${rd + 1}] = h.valHi;` +
            ` if (h.mmioTouched) { h.mmioTouched = false; ${exitTo(`pb + ${num(nextOff)}`, k + 1)} } } }`,
        );
        break;
      }
      case Op.SB:
      case Op.SH:
      case Op.SW:
      case Op.SD: {
        const size = op === Op.SB ? 1 : op === Op.SH ? 2 : op === Op.SW ? 4 : 8;
        const fast =
          op === Op.SD
            ? `h.write8(sv[ti], o, ${X(r2)}, ${X(r2 + 1)});`
            : op === Op.SW
              ? `sv[ti].setInt32(o, ${X(r2)}, true);`
              : op === Op.SH
                ? `sv[ti].setInt16(o, ${X(r2)}, true);`
                : `sv[ti].setInt8(o, ${X(r2)});`;
        // A store that rewrote this page's code (or touched a device) ends the block: what follows is re-fetched.
        out.push(
          `{ const va = ${X(r1 + 1)} * ${TWO32} + (${X(r1)} >>> 0) + ${I}; const off = va & 4095; const ti = (va >>> 12) & 2047;` +
            ` if (st[ti] === va - off + ctx && off <= 4088) { const o = so[ti] + off; ${fast} }` +
            ` else { ${trapPoint(pcOff)} h.storeSlow(va, ${size}, ${X(r2)}, ${X(r2 + 1)});` +
            ` if (h.mmioTouched || cp[ppn] === 0) { h.mmioTouched = false; ${exitTo(`pb + ${num(nextOff)}`, k + 1)} } } }`,
        );
        break;
      }
      case Op.ADDI:
        if (imm === 0) out.push(`x[${rd}] = ${X(r1)}; x[${rd + 1}] = ${X(r1 + 1)};`);
        else
          out.push(
            `{ const a = ${X(r1)}; const l = (a + ${I}) | 0; x[${rd + 1}] = (${X(r1 + 1)} + ${IHI} + (l >>> 0 < a >>> 0 ? 1 : 0)) | 0; x[${rd}] = l; }`,
          );
        break;
      case Op.SLTI:
        out.push(
          `{ const ah = ${X(r1 + 1)}; x[${rd}] = ah < ${IHI} || (ah === ${IHI} && ${X(r1)} >>> 0 < ${num(imm >>> 0)}) ? 1 : 0; x[${rd + 1}] = 0; }`,
        );
        break;
      case Op.SLTIU: {
        const bh = num((imm >> 31) >>> 0);
        out.push(
          `{ const ah = ${X(r1 + 1)} >>> 0; x[${rd}] = ah < ${bh} || (ah === ${bh} && ${X(r1)} >>> 0 < ${num(imm >>> 0)}) ? 1 : 0; x[${rd + 1}] = 0; }`,
        );
        break;
      }
      case Op.XORI:
        out.push(`x[${rd + 1}] = ${X(r1 + 1)} ^ ${IHI}; x[${rd}] = ${X(r1)} ^ ${I};`);
        break;
      case Op.ORI:
        out.push(`x[${rd + 1}] = ${X(r1 + 1)} | ${IHI}; x[${rd}] = ${X(r1)} | ${I};`);
        break;
      case Op.ANDI:
        out.push(`x[${rd + 1}] = ${X(r1 + 1)} & ${IHI}; x[${rd}] = ${X(r1)} & ${I};`);
        break;
      case Op.SLLI:
      case Op.SRLI:
      case Op.SRAI:
        out.push(constShift(op, rd, r1, imm & 63));
        break;
      case Op.ADD:
        out.push(
          `{ const a = ${X(r1)}; const l = (a + ${X(r2)}) | 0; x[${rd + 1}] = (${X(r1 + 1)} + ${X(r2 + 1)} + (l >>> 0 < a >>> 0 ? 1 : 0)) | 0; x[${rd}] = l; }`,
        );
        break;
      case Op.SUB:
        out.push(
          `{ const a = ${X(r1)}; const b = ${X(r2)}; x[${rd + 1}] = (${X(r1 + 1)} - ${X(r2 + 1)} - (a >>> 0 < b >>> 0 ? 1 : 0)) | 0; x[${rd}] = (a - b) | 0; }`,
        );
        break;
      case Op.SLL:
        out.push(`shl(x, ${rd}, ${X(r1)}, ${X(r1 + 1)}, ${X(r2)} & 63);`);
        break;
      case Op.SRL:
        out.push(`shr(x, ${rd}, ${X(r1)}, ${X(r1 + 1)}, ${X(r2)} & 63);`);
        break;
      case Op.SRA:
        out.push(`sar(x, ${rd}, ${X(r1)}, ${X(r1 + 1)}, ${X(r2)} & 63);`);
        break;
      case Op.SLT:
        out.push(
          `{ const ah = ${X(r1 + 1)}; const bh = ${X(r2 + 1)}; x[${rd}] = ah < bh || (ah === bh && ${X(r1)} >>> 0 < ${X(r2)} >>> 0) ? 1 : 0; x[${rd + 1}] = 0; }`,
        );
        break;
      case Op.SLTU:
        out.push(
          `{ const ah = ${X(r1 + 1)} >>> 0; const bh = ${X(r2 + 1)} >>> 0; x[${rd}] = ah < bh || (ah === bh && ${X(r1)} >>> 0 < ${X(r2)} >>> 0) ? 1 : 0; x[${rd + 1}] = 0; }`,
        );
        break;
      case Op.XOR:
        out.push(`x[${rd + 1}] = ${X(r1 + 1)} ^ ${X(r2 + 1)}; x[${rd}] = ${X(r1)} ^ ${X(r2)};`);
        break;
      case Op.OR:
        out.push(`x[${rd + 1}] = ${X(r1 + 1)} | ${X(r2 + 1)}; x[${rd}] = ${X(r1)} | ${X(r2)};`);
        break;
      case Op.AND:
        out.push(`x[${rd + 1}] = ${X(r1 + 1)} & ${X(r2 + 1)}; x[${rd}] = ${X(r1)} & ${X(r2)};`);
        break;
      case Op.ADDIW:
        out.push(word(rd, `(${X(r1)} + ${I}) | 0`));
        break;
      case Op.SLLIW:
        out.push(word(rd, `${X(r1)} << ${num(imm & 31)}`));
        break;
      case Op.SRLIW:
        out.push(word(rd, `(${X(r1)} >>> ${num(imm & 31)}) | 0`));
        break;
      case Op.SRAIW:
        out.push(word(rd, `${X(r1)} >> ${num(imm & 31)}`));
        break;
      case Op.ADDW:
        out.push(word(rd, `(${X(r1)} + ${X(r2)}) | 0`));
        break;
      case Op.SUBW:
        out.push(word(rd, `(${X(r1)} - ${X(r2)}) | 0`));
        break;
      case Op.SLLW:
        out.push(word(rd, `${X(r1)} << (${X(r2)} & 31)`));
        break;
      case Op.SRLW:
        out.push(word(rd, `(${X(r1)} >>> (${X(r2)} & 31)) | 0`));
        break;
      case Op.SRAW:
        out.push(word(rd, `${X(r1)} >> (${X(r2)} & 31)`));
        break;
      case Op.MUL:
        out.push(`mul64(${X(r1)}, ${X(r1 + 1)}, ${X(r2)}, ${X(r2 + 1)}); x[${rd}] = r64[0]; x[${rd + 1}] = r64[1];`);
        break;
      case Op.MULW:
        out.push(word(rd, `Math.imul(${X(r1)}, ${X(r2)})`));
        break;
      case Op.FPOP:
        // FS off or a reserved rounding mode writes nothing; the hart's slow path then raises the trap.
        out.push(
          `if ((h.mstatus & ${num(MSTATUS_FS)}) !== 0 && fpf[${num(imm & 0xff)}](h.fp, x, ${rd >>> 1}, ${r1 >>> 1}, ${r2 >>> 1}, ${num((imm >>> 8) & 31)}, ${num((imm >>> 13) & 7)})) h.mstatus |= ${num(MSTATUS_FS)};` +
            ` else { h.pcValue = pb + ${num(pcOff)}; ${trapPoint(pcOff)} h.execSlow(${num(w)}, ${I}, ${rd}, ${r1}, ${r2}); }`,
        );
        break;
      default:
        // Everything else runs in the hart's execSlow, as in the interpreter. `true` means control left the
        // straight line (xret, fence.i, CSR write, trap-free ecall...): h.pcValue is already the next pc.
        out.push(
          `h.pcValue = pb + ${num(pcOff)}; h.retiredInRun = n + ${k}; ${trapPoint(pcOff)}` +
            ` if (h.execSlow(${num(w)}, ${I}, ${rd}, ${r1}, ${r2})) return n + ${k + 1};` +
            ` if (cp[ppn] === 0) { ${exitTo(`pb + ${num(nextOff)}`, k + 1)} }`,
        );
    }
    k++;
    slot += step;
    if (ends) break;
  }
  const inner = out.join('\n    ');
  const body = loops ? `const ctx = h.dataCtx;\nfor (;;) {\n    ${inner}\n}` : `const ctx = h.dataCtx;\n    ${inner}`;
  return { body, length: k };
}

const word = (rd: number, expr: string): string => `{ const v = ${expr}; x[${rd}] = v; x[${rd + 1}] = v >> 31; }`;

function constShift(op: number, rd: number, r1: number, s: number): string {
  const lo = `x[${r1}]`;
  const hi = `x[${r1 + 1}]`;
  if (s === 0) return `x[${rd}] = ${lo}; x[${rd + 1}] = ${hi};`;
  if (op === Op.SLLI) {
    if (s < 32) return `{ const l = ${lo}; x[${rd + 1}] = (${hi} << ${s}) | (l >>> ${32 - s}); x[${rd}] = l << ${s}; }`;
    return `x[${rd + 1}] = ${lo} << ${s - 32}; x[${rd}] = 0;`;
  }
  if (op === Op.SRLI) {
    if (s < 32) return `{ const h1 = ${hi}; x[${rd}] = (${lo} >>> ${s}) | (h1 << ${32 - s}); x[${rd + 1}] = h1 >>> ${s}; }`;
    return `x[${rd}] = ${hi} >>> ${s - 32}; x[${rd + 1}] = 0;`;
  }
  if (s < 32) return `{ const h1 = ${hi}; x[${rd}] = (${lo} >>> ${s}) | (h1 << ${32 - s}); x[${rd + 1}] = h1 >> ${s}; }`;
  return `{ const h1 = ${hi}; x[${rd}] = h1 >> ${s - 32}; x[${rd + 1}] = h1 >> 31; }`;
}
