// Light, dark, or the system's choice; remembered in localStorage. Charts re-read colours on change.
export type ThemeChoice = 'auto' | 'light' | 'dark';
const KEY = 'typevisor-theme';
const changed = new EventTarget();

export function themeChoice(): ThemeChoice {
  const v = localStorage.getItem(KEY);
  return v === 'light' || v === 'dark' ? v : 'auto';
}

export function applyTheme(choice: ThemeChoice = themeChoice()): void {
  if (choice === 'auto') delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = choice;
  changed.dispatchEvent(new Event('change'));
}

export function setTheme(choice: ThemeChoice): void {
  if (choice === 'auto') localStorage.removeItem(KEY);
  else localStorage.setItem(KEY, choice);
  applyTheme(choice);
}

export function onThemeChange(fn: () => void): () => void {
  const mq = matchMedia('(prefers-color-scheme: dark)');
  changed.addEventListener('change', fn);
  mq.addEventListener('change', fn);
  return () => {
    changed.removeEventListener('change', fn);
    mq.removeEventListener('change', fn);
  };
}

export function cssVar(name: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}
