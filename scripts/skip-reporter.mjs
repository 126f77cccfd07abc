// A node:test reporter that writes one JSON line per skipped test: {file, name, reason}. scripts/test.mjs runs
// it next to the spec reporter and lists every skip with its reason in the summary, so a skip never hides.
export default async function* skipReporter(source) {
  for await (const event of source) {
    if (event.type !== 'test:pass' && event.type !== 'test:fail') continue;
    const { skip, name, file } = event.data;
    if (skip === undefined || skip === false) continue;
    yield JSON.stringify({ file: file ?? '', name, reason: typeof skip === 'string' ? skip : '(no reason given)' }) + '\n';
  }
}
