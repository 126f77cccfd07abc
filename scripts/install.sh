#!/usr/bin/env bash
# Installs everything typevisor needs on Debian 12 and builds it: apt packages (only those missing),
# npm packages (npm ci), the TypeScript build, and the guest images (cached; a rerun takes seconds).
# Idempotent and non-interactive (works with CI=true and no stdin). Run it from anywhere in the clone.
# apt waits up to 10 minutes for the dpkg lock (a fresh machine often runs unattended-upgrades at first boot).
# The busybox build uses `apt-get source busybox`: when apt has no deb-src entry, it adds one,
# /etc/apt/sources.list.d/typevisor-src.sources (Debian main, this machine's mirror and suite).
# The first guest build takes about 15 minutes on 2 cores (Linux kernel 4-10 min, busybox ~3 min);
# later runs are cache hits and take seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '== install: %s\n' "$*"; }
die() { printf 'install: %s\n' "$*" >&2; exit 1; }

# --- Node.js >= 20
command -v node >/dev/null 2>&1 || die "Node.js >= 20 is required but 'node' is not installed (Debian 12's nodejs is 18: install Node 20+, e.g. from nodesource, then rerun)"
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || die "Node.js >= 20 is required, found $(node --version); install Node 20+ and rerun"
command -v npm >/dev/null 2>&1 || die "npm is required (it comes with Node.js)"

# --- apt packages
APT_PACKAGES=(
  # cross toolchain and kernel/busybox sources
  gcc-riscv64-linux-gnu libc6-dev-riscv64-cross binutils-riscv64-linux-gnu linux-source-6.1
  gcc libc6-dev make bc bison flex libssl-dev libelf-dev dpkg-dev xz-utils bzip2 perl ccache rsync
  # firmware
  opensbi u-boot-qemu
  # reference machine, user-mode emulator, image tools, debugger
  qemu-system-misc qemu-user qemu-utils device-tree-compiler e2fsprogs cpio gdb-multiarch
  # test certificates for the daemon's TLS listener
  openssl
  # the web console's browser tests (driven by playwright-core; no browser download)
  chromium
)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q ' installed$' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then SUDO=(); elif command -v sudo >/dev/null 2>&1; then SUDO=(sudo -n); else
    die "missing apt packages: ${missing[*]} (run as root or install sudo)"; fi
  say "installing apt packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Update the lists once, only when the install cannot proceed with the ones we have.
  # DPkg::Lock::Timeout: wait for the dpkg lock (unattended-upgrades on a fresh machine) instead of failing.
  APT=(apt-get -o DPkg::Lock::Timeout=600)
  if ! "${SUDO[@]}" "${APT[@]}" install -y -q --no-install-recommends "${missing[@]}" </dev/null; then
    "${SUDO[@]}" "${APT[@]}" update -q </dev/null
    "${SUDO[@]}" "${APT[@]}" install -y -q --no-install-recommends "${missing[@]}" </dev/null
  fi
else
  say "apt packages: all present"
fi

# --- npm packages and the build
# npm writes node_modules/.package-lock.json on every install: newer than the lockfile + a clean
# `npm ls` means node_modules already matches it (a fresh clone always gets a real `npm ci`).
if [ node_modules/.package-lock.json -nt package-lock.json ] && npm ls --depth=0 >/dev/null 2>&1; then
  say "npm packages: up to date"
else
  say "npm ci"
  npm ci --no-audit --no-fund </dev/null
fi
say "npm run build"
npm run --silent build </dev/null

# --- guest images (Linux, busybox initramfs and rootfs, firmware), cached by input hash
if node bin/typevisor.js guest path >/dev/null 2>&1; then
  say "typevisor guest build (checking the cache)"
else
  say "typevisor guest build: the first build takes about 15 minutes on 2 cores (Linux kernel 4-10 min, busybox ~3 min);"
  say "  busybox comes from 'apt-get source busybox': if apt has no deb-src entry, one is added in"
  say "  /etc/apt/sources.list.d/typevisor-src.sources (Debian main, this machine's mirror)"
fi
node bin/typevisor.js guest build </dev/null
say "done"
