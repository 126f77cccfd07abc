// Which .debs from one archive index a Debian tree needs to install a package: the package and, recursively,
// every dependency its installed packages do not satisfy, taken from the same index. Used where apt itself
// cannot be: this machine's mirror serves trixie-backports' Packages.xz out of step with its signed InRelease,
// so apt refuses the suite; the index is read directly and each .deb is checked against the index's SHA256.
import { execFileSync } from 'node:child_process';

export interface DebStanza {
  package: string;
  version: string;
  filename: string;
  size: number;
  sha256: string;
  /** Depends and Pre-Depends: groups of alternatives. */
  depends: DebRelation[][];
  provides: string[];
}

export interface DebRelation {
  name: string;
  op?: '<<' | '<=' | '=' | '>=' | '>>';
  version?: string;
}

/** Splits an index or dpkg status file into field maps (continuation lines folded). */
export function parseControl(text: string): Map<string, string>[] {
  const out: Map<string, string>[] = [];
  for (const para of text.split(/\n\s*\n/)) {
    const fields = new Map<string, string>();
    let last: string | undefined;
    for (const line of para.split('\n')) {
      if (/^\s/.test(line) && last) fields.set(last, `${fields.get(last)!}\n${line.trim()}`);
      else {
        const m = /^([A-Za-z0-9-]+):\s*(.*)$/.exec(line);
        if (m) fields.set((last = m[1]!.toLowerCase()), m[2]!);
      }
    }
    if (fields.has('package')) out.push(fields);
  }
  return out;
}

export function parseRelations(field: string | undefined): DebRelation[][] {
  if (!field) return [];
  return field
    .split(',')
    .map((group) =>
      group.split('|').map((alt) => {
        const m = /^\s*([a-z0-9][a-z0-9+.-]*)(?::[a-z0-9-]+)?\s*(?:\(\s*(<<|<=|=|>=|>>)\s*([^)\s]+)\s*\))?/.exec(alt);
        if (!m) throw new Error(`bad dependency: ${alt.trim()}`);
        return m[2] ? { name: m[1]!, op: m[2] as DebRelation['op'], version: m[3]! } : { name: m[1]! };
      }),
    )
    .filter((g) => g.length > 0);
}

export function parseIndex(text: string): Map<string, DebStanza> {
  const byName = new Map<string, DebStanza>();
  for (const f of parseControl(text)) {
    const s: DebStanza = {
      package: f.get('package')!,
      version: f.get('version') ?? '',
      filename: f.get('filename') ?? '',
      size: Number(f.get('size') ?? 0),
      sha256: f.get('sha256') ?? '',
      depends: [...parseRelations(f.get('pre-depends')), ...parseRelations(f.get('depends'))],
      provides: parseRelations(f.get('provides'))
        .flat()
        .map((r) => r.name),
    };
    const prev = byName.get(s.package);
    if (!prev || versionCompare(s.version, 'gt', prev.version)) byName.set(s.package, s);
  }
  return byName;
}

/** dpkg's own version comparison. */
export function versionCompare(a: string, op: 'lt' | 'le' | 'eq' | 'ge' | 'gt', b: string): boolean {
  try {
    execFileSync('dpkg', ['--compare-versions', a, op, b], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const OPS = { '<<': 'lt', '<=': 'le', '=': 'eq', '>=': 'ge', '>>': 'gt' } as const;

function satisfies(version: string, rel: DebRelation): boolean {
  return !rel.op || versionCompare(version, OPS[rel.op], rel.version!);
}

/** name → version of the packages a dpkg status file says are installed (and what they provide). */
export function installedPackages(status: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  const add = (name: string, version: string) => out.set(name, [...(out.get(name) ?? []), version]);
  for (const f of parseControl(status)) {
    if (!/ installed$/.test(f.get('status') ?? '')) continue;
    add(f.get('package')!, f.get('version') ?? '');
    for (const p of parseRelations(f.get('provides')).flat()) add(p.name, p.version ?? '');
  }
  return out;
}

/** The stanzas to fetch so that `root` (the package name) installs over `installed`. */
export function closure(index: Map<string, DebStanza>, installed: Map<string, string[]>, root: string): DebStanza[] {
  const chosen = new Map<string, DebStanza>();
  const want = (rel: DebRelation): DebStanza | undefined => {
    const s = index.get(rel.name);
    return s && satisfies(s.version, rel) ? s : undefined;
  };
  const isMet = (rel: DebRelation) =>
    (installed.get(rel.name) ?? []).some((v) => v === '' || satisfies(v, rel)) ||
    (chosen.has(rel.name) && satisfies(chosen.get(rel.name)!.version, rel));
  const visit = (s: DebStanza) => {
    if (chosen.has(s.package)) return;
    chosen.set(s.package, s);
    for (const group of s.depends) {
      if (group.some(isMet)) continue;
      const pick = group.map(want).find((x) => x !== undefined);
      if (!pick)
        throw new Error(
          `${s.package} needs ${group.map((r) => r.name + (r.op ? ` (${r.op} ${r.version})` : '')).join(' | ')}, which neither the image nor the index has`,
        );
      visit(pick);
    }
  };
  const top = index.get(root);
  if (!top) throw new Error(`the index has no ${root}`);
  visit(top);
  return [...chosen.values()];
}
