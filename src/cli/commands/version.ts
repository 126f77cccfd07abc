export const summary = 'print the typevisor version';

export async function run(): Promise<number> {
  console.log('typevisor 0.1.0');
  return 0;
}
