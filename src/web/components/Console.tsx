// The guest's serial console in xterm.js over the daemon's console WebSocket (GET /vms/NAME/console, raw bytes
// both ways; the session cookie authenticates it). Loaded on demand: the host page does not pay for xterm.
import { useEffect, useRef, useState } from 'preact/hooks';
import { Terminal } from '@xterm/xterm';
import { FitAddon } from '@xterm/addon-fit';
import '@xterm/xterm/css/xterm.css';
import { cssVar, onThemeChange } from '../theme.js';

type Status = 'connecting' | 'connected' | 'closed';

function theme(): { background: string; foreground: string; cursor: string; selectionBackground: string } {
  return {
    background: cssVar('--term-bg'),
    foreground: cssVar('--term-fg'),
    cursor: cssVar('--term-fg'),
    selectionBackground: cssVar('--term-selection'),
  };
}

export default function Console({ name, active }: { name: string; active: boolean }) {
  const box = useRef<HTMLDivElement>(null);
  const term = useRef<Terminal | null>(null);
  const sock = useRef<WebSocket | null>(null);
  const [status, setStatus] = useState<Status>('closed');
  const [attempt, setAttempt] = useState(0);
  const encoder = useRef(new TextEncoder());

  const send = (text: string): void => {
    const ws = sock.current;
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(encoder.current.encode(text));
  };
  const copy = async (): Promise<void> => {
    const sel = term.current?.getSelection();
    if (sel) await navigator.clipboard.writeText(sel);
  };
  const paste = async (): Promise<void> => {
    const text = await navigator.clipboard.readText();
    if (text) term.current?.paste(text);
  };

  useEffect(() => {
    const t = new Terminal({
      convertEol: false,
      cursorBlink: true,
      fontSize: 14,
      scrollback: 5000,
      fontFamily: 'ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace',
      theme: theme(),
    });
    const fit = new FitAddon();
    t.loadAddon(fit);
    t.open(box.current!);
    fit.fit();
    t.onData(send);
    // Ctrl+Shift+C / Ctrl+Shift+V copy and paste, as in desktop terminals (plain Ctrl+C goes to the guest).
    t.attachCustomKeyEventHandler((e) => {
      if (e.ctrlKey && e.shiftKey && (e.key === 'C' || e.key === 'c')) {
        if (e.type === 'keydown') void copy();
        return false;
      }
      // Ctrl+Shift+V: the browser's own paste event reaches xterm's textarea; xterm must only not send ^V.
      if (e.ctrlKey && e.shiftKey && (e.key === 'V' || e.key === 'v')) return false;
      return true;
    });
    term.current = t;
    const ro = new ResizeObserver(() => fit.fit());
    ro.observe(box.current!);
    const off = onThemeChange(() => (t.options.theme = theme()));
    return () => {
      off();
      ro.disconnect();
      t.dispose();
      term.current = null;
    };
  }, []);

  useEffect(() => {
    if (!active) return;
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/vms/${encodeURIComponent(name)}/console`;
    const ws = new WebSocket(url);
    ws.binaryType = 'arraybuffer';
    sock.current = ws;
    setStatus('connecting');
    ws.onopen = () => {
      setStatus('connected');
      // A fresh line makes the guest's shell print its prompt for the new viewer.
      ws.send(encoder.current.encode('\r'));
      term.current?.focus();
    };
    ws.onmessage = (e) => term.current?.write(new Uint8Array(e.data as ArrayBuffer));
    ws.onclose = () => {
      setStatus('closed');
      if (sock.current === ws) sock.current = null;
    };
    return () => ws.close();
  }, [name, active, attempt]);

  return (
    <section class="console-panel" aria-label="Console">
      <div class="toolbar">
        <h2>Console</h2>
        <span class={`console-status ${status}`} role="status">
          {active ? status : 'VM not running'}
        </span>
        <button type="button" onClick={() => void copy()} title="Copy the selection (Ctrl+Shift+C)">
          Copy
        </button>
        <button
          type="button"
          onClick={() => void paste()}
          title="Paste into the console (Ctrl+Shift+V)"
          disabled={status !== 'connected'}
        >
          Paste
        </button>
        <button type="button" onClick={() => setAttempt((a) => a + 1)} disabled={!active || status !== 'closed'}>
          Reconnect
        </button>
      </div>
      <div ref={box} class="console-screen" />
    </section>
  );
}
