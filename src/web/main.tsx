import './nonce.js';
import './styles.css';
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { ApiError, currentSession, login, logout, setUnauthorizedHandler, type SessionInfo } from './api.js';
import { liveMode, subscribe, type Snapshot } from './live.js';
import { record } from './history.js';
import { HOST_PATH, NEW_PATH, onLinkClick, useRoute } from './router.js';
import { applyTheme, setTheme, themeChoice, type ThemeChoice } from './theme.js';
import { HostPage } from './pages/Host.js';
import { VmPage } from './pages/Vm.js';
import { NewVmPage } from './pages/NewVm.js';

applyTheme();

function Login({ onDone }: { onDone: (s: SessionInfo) => void }) {
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event): Promise<void> => {
    e.preventDefault();
    const token = String(new FormData(e.currentTarget as HTMLFormElement).get('token') ?? '').trim();
    setBusy(true);
    setError(null);
    try {
      onDone(await login(token));
    } catch (err) {
      setError(err instanceof ApiError ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="login">
      <form onSubmit={(e) => void submit(e)} aria-label="Log in">
        <h1>typevisor</h1>
        <label>
          Daemon token
          <input name="token" type="password" autoComplete="current-password" required autoFocus aria-describedby="token-help" />
        </label>
        <p id="token-help" class="muted">
          The token is in the daemon's home: <code>cat ~/.local/share/typevisor/token</code> (or <code>--home</code>/token).
        </p>
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" class="primary" disabled={busy}>
          Log in
        </button>
      </form>
    </main>
  );
}

function ThemeSwitch() {
  const [choice, setChoice] = useState<ThemeChoice>(themeChoice());
  return (
    <label class="theme">
      Theme{' '}
      <select
        value={choice}
        onChange={(e) => {
          const c = (e.target as HTMLSelectElement).value as ThemeChoice;
          setChoice(c);
          setTheme(c);
        }}
      >
        <option value="auto">system</option>
        <option value="light">light</option>
        <option value="dark">dark</option>
      </select>
    </label>
  );
}

function Shell({ session, onLogout }: { session: SessionInfo; onLogout: () => void }) {
  const route = useRoute();
  const [snap, setSnap] = useState<Snapshot | undefined>();
  const [error, setError] = useState<string | null>(null);
  useEffect(
    () =>
      subscribe(
        (s) => {
          record(s);
          setSnap(s);
          setError(null);
        },
        (err) => setError(err.message),
      ),
    [],
  );
  useEffect(() => {
    const vm = route.page === 'vm' ? ` · ${route.name}` : route.page === 'new' ? ' · new VM' : '';
    document.title = `typevisor${snap ? ' · ' + snap.host.hostname : ''}${vm}`;
  }, [route, snap?.host.hostname]);

  let page;
  if (route.page === 'host') page = <HostPage snap={snap} />;
  else if (route.page === 'vm') page = <VmPage name={route.name} snap={snap} key={route.name} />;
  else if (route.page === 'new') page = <NewVmPage />;
  else
    page = (
      <p>
        No page at {route.path}. <a href={HOST_PATH}>Host</a>
      </p>
    );
  return (
    <div onClick={onLinkClick}>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <a class="brand" href={HOST_PATH}>
          typevisor
        </a>
        <nav aria-label="Main">
          <a href={HOST_PATH} aria-current={route.page === 'host' ? 'page' : undefined}>
            Host
          </a>
          <a href={NEW_PATH} aria-current={route.page === 'new' ? 'page' : undefined}>
            New VM
          </a>
        </nav>
        <span class="live" role="status" data-live={error ? 'error' : snap ? 'ok' : 'loading'} data-mode={liveMode()}>
          {error ? `updates failing: ${error}` : snap ? `live · ${new Date(snap.at).toLocaleTimeString()}` : 'connecting…'}
        </span>
        <ThemeSwitch />
        {session.auth === 'session' && (
          <button type="button" onClick={() => void logout().finally(onLogout)}>
            Log out
          </button>
        )}
      </header>
      <main id="main" tabIndex={-1}>
        {page}
      </main>
    </div>
  );
}

function App() {
  const [session, setSession] = useState<SessionInfo | null | undefined>(undefined);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    setUnauthorizedHandler(() => setSession(null));
    currentSession().then(
      (s) => setSession(s ?? null),
      (err: Error) => setError(err.message),
    );
  }, []);
  if (error) return <p class="error">Cannot reach the daemon: {error}</p>;
  if (session === undefined) return <p aria-busy="true">Loading…</p>;
  if (session === null) return <Login onDone={setSession} />;
  return <Shell session={session} onLogout={() => setSession(null)} />;
}

render(<App />, document.getElementById('app')!);
