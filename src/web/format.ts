export function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  // Whole bytes, but a chart's 0.5 B/s tick should not read "1 B/s".
  const digits = i === 0 ? (Number.isInteger(n) ? 0 : 1) : n >= 100 ? 0 : 1;
  return `${n.toFixed(digits)} ${units[i]}`;
}

export const rate = (n: number): string => `${bytes(n)}/s`;
export const percent = (n: number): string => `${n.toFixed(n >= 10 ? 0 : 1)} %`;

export function duration(s: number): string {
  if (s < 60) return `${Math.floor(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.floor(s % 60)} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}
