// Reading Kconfig files (.config and fragments) and checking a fragment's demands against a final .config.
// olddefconfig silently drops any option whose dependencies are unmet, so every `=y` in our fragment is
// treated as a requirement and checked after configuration.

/** Symbol → value ('y', 'm', '8', '"text"') for set options, 'n' for `# CONFIG_X is not set`. */
export function parseKconfig(text: string): Map<string, string> {
  const values = new Map<string, string>();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    const set = /^(CONFIG_[A-Za-z0-9_]+)=(.*)$/.exec(line);
    if (set) {
      values.set(set[1]!, set[2]!);
      continue;
    }
    const unset = /^# (CONFIG_[A-Za-z0-9_]+) is not set$/.exec(line);
    if (unset) values.set(unset[1]!, 'n');
  }
  return values;
}

/**
 * Problems with `final` against `fragment`: an option the fragment sets to y that is not y, an option it
 * disables that ended up enabled, or a number that ended up smaller than asked (e.g. CONFIG_NR_CPUS).
 */
export function unmetRequirements(fragment: Map<string, string>, final: Map<string, string>): string[] {
  const problems: string[] = [];
  for (const [sym, want] of fragment) {
    const got = final.get(sym) ?? 'n';
    if (want === 'y' && got !== 'y') problems.push(`${sym}=y wanted, got ${got === 'n' ? 'not set' : got}`);
    else if (want === 'n' && (got === 'y' || got === 'm')) problems.push(`${sym} should not be set, got ${got}`);
    else if (/^\d+$/.test(want) && !(Number(got) >= Number(want))) problems.push(`${sym}>=${want} wanted, got ${got}`);
  }
  return problems;
}

/**
 * Applies a fragment to a .config text: each symbol the fragment mentions gets the fragment's value
 * (its old line removed, the new one appended), the way merge_config.sh does for the kernel. Used for
 * busybox, whose kconfig has no merge script.
 */
export function applyFragment(config: string, fragment: Map<string, string>): string {
  const kept = config.split('\n').filter((line) => {
    const m = /^(?:# )?(CONFIG_[A-Za-z0-9_]+)[= ]/.exec(line);
    return !(m && fragment.has(m[1]!));
  });
  while (kept.length && kept[kept.length - 1] === '') kept.pop();
  for (const [sym, value] of fragment) kept.push(value === 'n' ? `# ${sym} is not set` : `${sym}=${value}`);
  return kept.join('\n') + '\n';
}
