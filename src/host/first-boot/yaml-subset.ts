/**
 * The part of YAML that cloud-config files use, parsed into plain values (strings, booleans, null, arrays and
 * objects): block mappings and sequences by indentation, `- key: value` items, flow sequences `[a, b]`, plain,
 * single- and double-quoted scalars, `|` and `>` block scalars, and `#` comments. Anchors, tags, flow mappings,
 * multi-document streams and multi-line plain scalars are refused with a YamlError naming the line, never guessed.
 * Numbers stay strings: every cloud-config field typevisor reads is text or a boolean.
 */

export class YamlError extends Error {
  constructor(
    readonly line: number,
    message: string,
  ) {
    super(`line ${line}: ${message}`);
    this.name = 'YamlError';
  }
}

export type YamlValue = string | boolean | null | YamlValue[] | { [key: string]: YamlValue };

const MAX_DEPTH = 32;

interface Line {
  no: number;
  indent: number;
  /** The line without its indentation (and without a trailing comment unless it sits in a quoted scalar). */
  text: string;
  /** The raw line, for block scalars, which keep everything. */
  raw: string;
}

/** Removes a ` #` comment outside quotes. */
function stripComment(s: string): string {
  let quote: string | undefined;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (quote) {
      if (c === '\\' && quote === '"') i++;
      else if (c === quote) quote = undefined;
    } else if (c === '"' || c === "'") {
      if (i === 0 || /[\s[,:-]/.test(s[i - 1]!)) quote = c;
    } else if (c === '#' && (i === 0 || /\s/.test(s[i - 1]!))) return s.slice(0, i).trimEnd();
  }
  return s.trimEnd();
}

function scalar(s: string, no: number): YamlValue {
  if (s === '' || s === '~' || s === 'null' || s === 'Null' || s === 'NULL') return null;
  if (/^(true|True|TRUE|yes|Yes|on|On)$/.test(s)) return true;
  if (/^(false|False|FALSE|no|No|off|Off)$/.test(s)) return false;
  if (s.startsWith('"')) {
    if (!s.endsWith('"') || s.length < 2) throw new YamlError(no, `unterminated double-quoted string: ${s}`);
    try {
      return JSON.parse(s) as string;
    } catch {
      throw new YamlError(no, `bad escape in double-quoted string: ${s}`);
    }
  }
  if (s.startsWith("'")) {
    if (!s.endsWith("'") || s.length < 2) throw new YamlError(no, `unterminated single-quoted string: ${s}`);
    return s.slice(1, -1).replace(/''/g, "'");
  }
  if (s.startsWith('[')) return flowSequence(s, no);
  if (/^[{&*!%@`|>]/.test(s)) throw new YamlError(no, `unsupported YAML (flow mappings, anchors, tags): ${s}`);
  return s;
}

function flowSequence(s: string, no: number): YamlValue[] {
  if (!s.endsWith(']')) throw new YamlError(no, `a flow sequence must end on its line: ${s}`);
  const body = s.slice(1, -1).trim();
  if (body === '') return [];
  const items: string[] = [];
  let cur = '';
  let quote: string | undefined;
  for (const c of body) {
    if (quote) {
      if (c === quote) quote = undefined;
      cur += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      cur += c;
    } else if (c === '[' || c === '{') throw new YamlError(no, `nested flow collections are not supported: ${s}`);
    else if (c === ',') {
      items.push(cur.trim());
      cur = '';
    } else cur += c;
  }
  if (quote) throw new YamlError(no, `unterminated string in ${s}`);
  items.push(cur.trim());
  return items.map((i) => scalar(i, no));
}

/** `key: rest` → [key, rest]; undefined when the text is not a mapping entry. */
function mappingEntry(text: string, no: number): [string, string] | undefined {
  let key: string;
  let rest: string;
  if (text.startsWith('"') || text.startsWith("'")) {
    const end = text.indexOf(text[0]!, 1);
    if (end < 0 || text[end + 1] !== ':') return undefined;
    key = scalar(text.slice(0, end + 1), no) as string;
    rest = text.slice(end + 2);
  } else {
    const m = /^([^\s:#[\]{},][^:#]*?|[^\s:#[\]{},]):(?:\s+|$)(.*)$/.exec(text);
    if (!m) return undefined;
    key = m[1]!;
    rest = m[2]!;
  }
  return [key, rest.trim()];
}

class Parser {
  private pos = 0;
  constructor(private readonly lines: Line[]) {}

  parseDocument(): YamlValue {
    if (this.lines.length === 0) return null;
    const v = this.block(this.lines[0]!.indent, 0);
    if (this.pos < this.lines.length) throw new YamlError(this.lines[this.pos]!.no, 'unexpected indentation');
    return v;
  }

  private block(indent: number, depth: number): YamlValue {
    if (depth > MAX_DEPTH) throw new YamlError(this.lines[this.pos]!.no, 'nested too deeply');
    const first = this.lines[this.pos]!;
    if (first.text === '-' || first.text.startsWith('- ')) return this.sequence(indent, depth);
    if (mappingEntry(first.text, first.no)) return this.mapping(indent, depth);
    this.pos++;
    if (this.pos < this.lines.length && this.lines[this.pos]!.indent > indent)
      throw new YamlError(this.lines[this.pos]!.no, 'multi-line plain scalars are not supported (quote it or use |)');
    return scalar(first.text, first.no);
  }

  /** The value after `key:` or `- `: inline text, a block scalar, or a nested block below `indent`. */
  private value(rest: string, indent: number, no: number, depth: number): YamlValue {
    if (rest === '|' || rest === '|-' || rest === '|+' || rest === '>' || rest === '>-' || rest === '>+')
      return this.blockScalar(rest, indent);
    if (rest !== '') return scalar(rest, no);
    const next = this.lines[this.pos];
    if (!next || next.indent <= indent) {
      // A sequence may sit at its key's indentation (`key:\n- a`), as cloud-config files often write it.
      if (next && next.indent === indent && (next.text === '-' || next.text.startsWith('- ')))
        return this.sequence(indent, depth + 1);
      return null;
    }
    return this.block(next.indent, depth + 1);
  }

  private blockScalar(style: string, indent: number): string {
    const body: string[] = [];
    let blockIndent: number | undefined;
    while (this.pos < this.lines.length) {
      const l = this.lines[this.pos]!;
      if (l.raw.trim() !== '') {
        if (l.indent <= indent) break;
        blockIndent ??= l.indent;
        if (l.indent < blockIndent) break;
      }
      body.push(l.raw.trim() === '' ? '' : l.raw.slice(blockIndent));
      this.pos++;
    }
    while (body.length && body[body.length - 1] === '') body.pop();
    let text = style.startsWith('>') ? body.join('\n').replace(/([^\n])\n(?=[^\n])/g, '$1 ') : body.join('\n');
    if (!style.endsWith('-') && body.length) text += '\n';
    return text;
  }

  private mapping(indent: number, depth: number): { [key: string]: YamlValue } {
    const out: { [key: string]: YamlValue } = Object.create(null) as { [key: string]: YamlValue };
    while (this.pos < this.lines.length) {
      const l = this.lines[this.pos]!;
      if (l.indent < indent) break;
      if (l.indent > indent) throw new YamlError(l.no, 'unexpected indentation');
      const entry = mappingEntry(l.text, l.no);
      if (!entry) throw new YamlError(l.no, `expected 'key: value', got: ${l.text}`);
      const [key, rest] = entry;
      if (Object.prototype.hasOwnProperty.call(out, key)) throw new YamlError(l.no, `duplicate key '${key}'`);
      this.pos++;
      out[key] = this.value(rest, indent, l.no, depth);
    }
    return { ...out };
  }

  private sequence(indent: number, depth: number): YamlValue[] {
    const out: YamlValue[] = [];
    while (this.pos < this.lines.length) {
      const l = this.lines[this.pos]!;
      if (l.indent < indent || !(l.text === '-' || l.text.startsWith('- '))) {
        if (l.indent > indent) throw new YamlError(l.no, 'unexpected indentation');
        break;
      }
      if (l.indent > indent) throw new YamlError(l.no, 'unexpected indentation');
      const rest = l.text === '-' ? '' : l.text.slice(2).trimStart();
      const itemIndent = l.indent + (l.text.length - rest.length);
      if (rest !== '' && (rest.startsWith('- ') || mappingEntry(rest, l.no))) {
        // `- key: value` starts a mapping (or `- - x` a sequence) whose lines sit at the item's indentation.
        this.lines[this.pos] = { ...l, indent: itemIndent, text: rest };
        out.push(this.block(itemIndent, depth + 1));
      } else {
        this.pos++;
        out.push(this.value(rest, indent, l.no, depth));
      }
    }
    return out;
  }
}

/** Parses one YAML document of the supported subset. */
export function parseYamlSubset(text: string): YamlValue {
  const lines: Line[] = [];
  const raw = text.replace(/\r\n/g, '\n').split('\n');
  for (const [i, r] of raw.entries()) {
    if (/^\t| \t/.test(r.match(/^\s*/)![0])) throw new YamlError(i + 1, 'tabs may not indent YAML');
    const indent = r.length - r.trimStart().length;
    const text = stripComment(r.trimStart());
    if (r.trimStart() === '---' && lines.length === 0) continue;
    if (r.trimStart() === '---' || r.trimStart() === '...') throw new YamlError(i + 1, 'only one YAML document is supported');
    // Blank and comment-only lines matter only inside block scalars, which read `raw`.
    lines.push({ no: i + 1, indent, text, raw: r });
  }
  // Lines with no content are kept for block scalars but skipped everywhere else.
  const parser = new Parser(compact(lines));
  return parser.parseDocument();
}

/**
 * Drops blank and comment-only lines except inside block scalars, where they are part of the text. A block
 * scalar starts after a line ending in `|` or `>` (with an optional chomping sign) and runs while lines are
 * blank or indented deeper than that line.
 */
function compact(lines: Line[]): Line[] {
  const out: Line[] = [];
  let scalarOf: number | undefined;
  for (const l of lines) {
    const blank = l.raw.trim() === '';
    if (scalarOf !== undefined) {
      if (blank || l.indent > scalarOf) {
        out.push(l);
        continue;
      }
      scalarOf = undefined;
    }
    if (blank || l.text === '') continue;
    out.push(l);
    if (/(^|[\s:-])[|>][-+]?$/.test(l.text)) scalarOf = l.indent;
  }
  return out;
}
